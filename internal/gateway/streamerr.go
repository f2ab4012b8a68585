package gateway

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Server-streaming routes (the proof download) report a failure that comes before the first message
// through grpc-gateway's stream error path, not the error handler: it asks handleStreamError for the status
// and marshals {"error": <google.rpc.Status>} with the route's marshaler. handleStreamError applies the
// error handler's rules to the status (server faults hidden and logged, JSON field names, public details
// only), and undelimited.Marshal writes it in the gateway's one error shape, so that a download that
// fails reads like every other failed call.

// handleStreamError is the mux's stream error handler.
func (g *Gateway) handleStreamError(ctx context.Context, err error) *status.Status {
	st := status.Convert(err)
	message, details := st.Message(), st.Proto().GetDetails()
	if fault, ok := serverFaults[st.Code()]; ok {
		rpc, _ := runtime.RPCMethod(ctx)
		g.log.LogAttrs(ctx, fault.level, "gateway: stream failed",
			slog.String("rpc", rpc), slog.String("code", st.Code().String()), slog.String("error", st.Message()))
		message, details = faultMessage(rpc, st, fault.message), retryInfoOnly(details)
	} else if names := renamerFor(ctx); names != nil {
		message, details = names.rename(message), names.renameDetails(details)
	}
	public := make([]*anypb.Any, 0, len(details))
	for _, d := range details {
		if publicDetails[d.MessageName()] {
			public = append(public, d)
		}
	}
	return status.FromProto(&spb.Status{Code: int32(st.Code()), Message: message, Details: public})
}

// Marshal implements runtime.Marshaler: grpc-gateway's error chunk of a failed stream is written in the
// gateway's error shape; everything else is marshaled by the configured marshaler.
func (u undelimited) Marshal(v any) ([]byte, error) {
	if chunk, ok := v.(map[string]proto.Message); ok && len(chunk) == 1 {
		if st, ok := chunk["error"].(*spb.Status); ok {
			return errorJSON(st), nil
		}
	}
	return u.Marshaler.Marshal(v)
}

// errorJSON renders a status as the gateway's error body.
func errorJSON(st *spb.Status) []byte {
	code := codes.Code(st.GetCode())
	var details []json.RawMessage
	for _, d := range st.GetDetails() {
		if b, err := protojson.Marshal(d); err == nil {
			details = append(details, b)
		}
	}
	return errorBodyJSON(runtime.HTTPStatusFromCode(code), code, st.GetMessage(), details)
}
