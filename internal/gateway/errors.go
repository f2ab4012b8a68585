package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/grpcerr"
)

// errorBody is the Google JSON error style: {"error":{"code":404,"status":"NOT_FOUND","message":"..."}}.
// code is the HTTP status, status the canonical gRPC code name, details the google.rpc detail messages in
// their JSON form ({"@type": "type.googleapis.com/google.rpc.BadRequest", ...}).
type errorBody struct {
	Error errorStatus `json:"error"`
}

type errorStatus struct {
	Code    int               `json:"code"`
	Status  string            `json:"status"`
	Message string            `json:"message"`
	Details []json.RawMessage `json:"details,omitempty"`
}

// publicDetails are the detail types a client may see. Anything else a service attaches (DebugInfo with
// its stack entries, above all) stays inside.
var publicDetails = messageNames(
	&errdetails.BadRequest{}, &errdetails.RetryInfo{}, &errdetails.ErrorInfo{},
	&errdetails.QuotaFailure{}, &errdetails.PreconditionFailure{}, &errdetails.ResourceInfo{},
	&errdetails.Help{}, &errdetails.LocalizedMessage{},
)

var retryInfoName = (&errdetails.RetryInfo{}).ProtoReflect().Descriptor().FullName()

func messageNames(msgs ...proto.Message) map[protoreflect.FullName]bool {
	names := make(map[protoreflect.FullName]bool, len(msgs))
	for _, m := range msgs {
		names[m.ProtoReflect().Descriptor().FullName()] = true
	}
	return names
}

// handleError is the mux's error handler: every failed REST call, whether the gateway rejected it (bad
// JSON, oversized body) or the service did, is answered here.
func (g *Gateway) handleError(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if _, probe := ctx.Value(probeKey{}).(*bool); probe {
		return
	}
	if bodyTooLarge(r, err) {
		writeError(w, http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
			fmt.Sprintf("request body exceeds %d bytes", g.cfg.MaxBodyBytes), nil)
		return
	}

	httpStatus := 0
	if hse, ok := errors.AsType[*runtime.HTTPStatusError](err); ok {
		httpStatus, err = hse.HTTPStatus, hse.Err
	}
	st := status.Convert(err)
	if httpStatus == 0 {
		httpStatus = runtime.HTTPStatusFromCode(st.Code())
	}

	if md, ok := runtime.ServerMetadataFromContext(ctx); ok {
		for k, vs := range md.HeaderMD {
			if h, ok := outgoingHeader(k); ok {
				for _, v := range vs {
					w.Header().Add(h, v)
				}
			}
		}
	}

	message, details := st.Message(), st.Proto().GetDetails()
	if fault, ok := serverFaults[st.Code()]; ok {
		// The services already hide their internals, but an error produced by the gRPC client itself
		// ("connection error: desc = ... dial tcp 10.0.0.7:9090 ...") would describe the network behind
		// the gateway. Log it, answer with a fixed message, and keep only the retry hint.
		rpc, _ := runtime.RPCMethod(ctx)
		g.log.LogAttrs(ctx, fault.level, "gateway: call failed",
			slog.String("rpc", rpc), slog.String("code", st.Code().String()), slog.String("error", st.Message()))
		message, details = faultMessage(rpc, st, fault.message), retryInfoOnly(details)
	} else if names := renamerFor(ctx); names != nil {
		// The services name fields as the gRPC contract does; a REST client knows their JSON names.
		message, details = names.rename(message), names.renameDetails(details)
	}

	if d := retryDelay(details); d > 0 && (httpStatus == http.StatusTooManyRequests || httpStatus == http.StatusServiceUnavailable) {
		w.Header().Set("Retry-After", strconv.FormatInt(d, 10))
	}
	if httpStatus == http.StatusUnauthorized {
		challenge := `Bearer realm="lastmile"`
		if r.Header.Get("Authorization") != "" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	writeError(w, httpStatus, st.Code(), message, g.publicJSON(ctx, details))
}

// handleRoutingError answers requests that matched no route (404), or matched a path under another method
// (405, with the Allow header listing the methods that path does serve).
func (g *Gateway) handleRoutingError(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	if _, probe := ctx.Value(probeKey{}).(*bool); probe {
		return
	}
	switch httpStatus {
	case http.StatusNotFound:
		writeError(w, http.StatusNotFound, codes.NotFound, "no such route", nil)
	case http.StatusMethodNotAllowed:
		allow := g.allowHeader(r)
		if allow != nil {
			w.Header().Set("Allow", strings.Join(allow, ", "))
		}
		// Not UNIMPLEMENTED, which would say the server lacks something: the client chose the wrong method.
		writeError(w, http.StatusMethodNotAllowed, codes.InvalidArgument,
			fmt.Sprintf("method %s is not allowed on this route; allowed: %s", r.Method, strings.Join(allow, ", ")), nil)
	case http.StatusBadRequest:
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "malformed request path", nil)
	default:
		writeError(w, http.StatusInternalServerError, codes.Internal, "internal error", nil)
	}
}

// allowedMethods finds which methods the mux serves for r's path. grpc-gateway does not expose its route
// table, so each candidate method is tried with a probe request that routeMiddleware recognizes and stops
// before any handler runs. This only happens on the 405 path.
func (g *Gateway) allowedMethods(r *http.Request) string {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		matched := false
		probe := r.Clone(context.WithValue(r.Context(), probeKey{}, &matched))
		probe.Method, probe.Body, probe.ContentLength = m, http.NoBody, 0
		g.mux.ServeHTTP(discardWriter{header: http.Header{}}, probe)
		if matched {
			allowed = append(allowed, m)
		}
	}
	return strings.Join(allowed, ", ")
}

// serverFaults are the codes that describe the server side's trouble rather than the request: their
// messages are replaced with a fixed one and the original is logged at the given level.
var serverFaults = map[codes.Code]struct {
	message string
	level   slog.Level
}{
	codes.Unknown:          {"internal error", slog.LevelError},
	codes.Internal:         {"internal error", slog.LevelError},
	codes.DataLoss:         {"internal error", slog.LevelError},
	codes.Unavailable:      {"service unavailable, retry later", slog.LevelWarn},
	codes.DeadlineExceeded: {"deadline exceeded", slog.LevelWarn},
	codes.Unimplemented:    {"not implemented", slog.LevelWarn},
}

// faultMessage is what a REST client reads of a server fault st that a call to rpc (a full method name,
// "" when unknown) ended with: fixed, the fault's fixed message, except for UNAVAILABLE, which names what
// is unavailable. A service that answered UNAVAILABLE itself (its handler: grpcerr.Answered) said which of
// the things it needs is missing in a message written for its clients, which gRPC clients read as well:
// "the courier service is unavailable; try again", "the database is unavailable; try again". Any other
// UNAVAILABLE is the gateway's own client failing to reach the service (its words may name addresses), so
// the message names the service rpc belongs to, in the same form: "the dispatch service is unavailable;
// try again".
func faultMessage(rpc string, st *status.Status, fixed string) string {
	if st.Code() != codes.Unavailable {
		return fixed
	}
	if grpcerr.Answered(st.Err()) && st.Message() != "" {
		return st.Message()
	}
	if name := serviceOf(rpc); name != "" {
		return "the " + name + " service is unavailable; try again"
	}
	return fixed
}

// unreachable returns err, which a call to the lastmile service named service ended with, as the gateway
// passes it on: an UNAVAILABLE that service did not answer itself (the gateway's client could not reach
// it, or lost it) becomes the gateway's own answer that it is unavailable, named as faultMessage names it
// and marked as answered (grpcerr.ToStatus), so that a route reading two services says which one failed
// whatever method it is annotated with. Anything else is returned as it is.
func unreachable(service string, err error) error {
	if status.Code(err) != codes.Unavailable || grpcerr.Answered(err) {
		return err
	}
	return grpcerr.ToStatus(apperr.Wrap(apperr.Unavailable, err, "the "+service+" service is unavailable; try again")).Err()
}

// serviceOf names the lastmile service of a full method name ("/lastmile.dispatch.v1.DispatchService/
// ListTasks" is dispatch's); "" for anything else.
func serviceOf(rpc string) string {
	parts := strings.Split(strings.TrimPrefix(rpc, "/"), ".")
	if len(parts) < 4 || parts[0] != "lastmile" || parts[1] == "" {
		return ""
	}
	return parts[1]
}

func retryInfoOnly(details []*anypb.Any) []*anypb.Any {
	var kept []*anypb.Any
	for _, d := range details {
		if d.MessageName() == retryInfoName {
			kept = append(kept, d)
		}
	}
	return kept
}

// retryDelay returns the RetryInfo delay in whole seconds, rounded up so that a client honoring
// Retry-After never comes back early, or 0 without RetryInfo.
func retryDelay(details []*anypb.Any) int64 {
	for _, d := range details {
		var ri errdetails.RetryInfo
		if d.UnmarshalTo(&ri) != nil {
			continue
		}
		if delay := ri.GetRetryDelay().AsDuration(); delay > 0 {
			return max(1, int64(math.Ceil(delay.Seconds())))
		}
	}
	return 0
}

// publicJSON renders the public details in their JSON form.
func (g *Gateway) publicJSON(ctx context.Context, details []*anypb.Any) []json.RawMessage {
	var out []json.RawMessage
	for _, d := range details {
		if !publicDetails[d.MessageName()] {
			continue
		}
		b, err := protojson.Marshal(d)
		if err != nil {
			g.log.LogAttrs(ctx, slog.LevelWarn, "gateway: drop error detail",
				slog.String("type", d.GetTypeUrl()), slog.String("error", err.Error()))
			continue
		}
		out = append(out, b)
	}
	return out
}

// writeError writes the JSON error body. It is the only place error responses are written, so that every
// error, from a routing miss to a service's validation failure, has the same shape.
func writeError(w http.ResponseWriter, httpStatus int, code codes.Code, message string, details []json.RawMessage) {
	body := errorBodyJSON(httpStatus, code, message, details)
	h := w.Header()
	h.Del("Trailer")
	h.Del("Transfer-Encoding")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}

// errorBodyJSON renders the JSON error body.
func errorBodyJSON(httpStatus int, code codes.Code, message string, details []json.RawMessage) []byte {
	body, err := json.Marshal(errorBody{Error: errorStatus{
		Code:    httpStatus,
		Status:  rpccode.Code(code).String(),
		Message: message,
		Details: details,
	}})
	if err != nil {
		// Only a detail that is not valid JSON can get here; the error itself still goes out.
		body, _ = json.Marshal(errorBody{Error: errorStatus{Code: httpStatus, Status: rpccode.Code(code).String(), Message: message}})
	}
	return body
}

// discardWriter swallows the output of probe requests.
type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}
