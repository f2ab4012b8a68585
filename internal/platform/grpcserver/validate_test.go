package grpcserver_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
)

// rangeMessage returns a message type with two timestamps, start and end, and a message rule with the CEL
// expression expr, built at run time so that the test does not depend on any service's contract.
func rangeMessage(t *testing.T, expr string) protoreflect.MessageDescriptor {
	t.Helper()
	opts := &descriptorpb.MessageOptions{}
	proto.SetExtension(opts, validate.E_Message, &validate.MessageRules{Cel: []*validate.Rule{{
		Id:         proto.String("range"),
		Message:    proto.String("end must be at most an hour after start"),
		Expression: proto.String(expr),
	}}})
	ts := func(name string, n int32) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{
			Name:     proto.String(name),
			Number:   proto.Int32(n),
			Label:    descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			Type:     descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(),
			TypeName: proto.String(".google.protobuf.Timestamp"),
			JsonName: proto.String(name),
		}
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("lastmile/grpcservertest/" + t.Name() + ".proto"),
		Package:    proto.String("lastmile.grpcservertest"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/timestamp.proto", "buf/validate/validate.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name:    proto.String("Range"),
			Field:   []*descriptorpb.FieldDescriptorProto{ts("start", 1), ts("end", 2)},
			Options: opts,
		}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("build test descriptor: %v", err)
	}
	return fd.Messages().Get(0)
}

// newRange returns a Range message of type md from start to end.
func newRange(md protoreflect.MessageDescriptor, start, end time.Time) proto.Message {
	m := dynamicpb.NewMessage(md)
	m.Set(md.Fields().ByName("start"), protoreflect.ValueOfMessage(timestamppb.New(start).ProtoReflect()))
	m.Set(md.Fields().ByName("end"), protoreflect.ValueOfMessage(timestamppb.New(end).ProtoReflect()))
	return m
}

// TestValidateRuleThatCannotEvaluateIsInvalid is issue 8's repro at the validator: a rule that overflows
// on the caller's values (the difference of two timestamps 9,998 years apart does not fit a duration) is
// the caller's error, with a message that does not leak the rule's internals, never Internal.
func TestValidateRuleThatCannotEvaluateIsInvalid(t *testing.T) {
	md := rangeMessage(t, "this.end - this.start <= duration('1h')")
	start := time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)
	end := time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

	err := grpcserver.Validate(newRange(md, start, end))
	if got := apperr.CodeOf(err); got != apperr.Invalid {
		t.Fatalf("Validate(0001..9999) = %v (code %q), want code %q", err, got, apperr.Invalid)
	}
	if got, want := apperr.MessageOf(err), "invalid request: a field value is outside the range its rules can check"; got != want {
		t.Errorf("Validate(0001..9999) message = %q, want %q", got, want)
	}

	// The same rule still judges values it can evaluate.
	if err := grpcserver.Validate(newRange(md, start, start.Add(time.Hour))); err != nil {
		t.Errorf("Validate(one hour) = %v, want nil", err)
	}
	err = grpcserver.Validate(newRange(md, start, start.Add(2*time.Hour)))
	if got := apperr.CodeOf(err); got != apperr.Invalid || len(apperr.As(err).Violations) != 1 {
		t.Errorf("Validate(two hours) = %v, want one violation with code %q", err, apperr.Invalid)
	}
}

// TestValidateRuleThatDoesNotCompileIsInternal checks that a broken rule stays the server's bug.
func TestValidateRuleThatDoesNotCompileIsInternal(t *testing.T) {
	md := rangeMessage(t, "this.nope > 0")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err := grpcserver.Validate(newRange(md, now, now))
	if got := apperr.CodeOf(err); got != apperr.Internal {
		t.Errorf("Validate with a rule that does not compile = %v (code %q), want code %q", err, got, apperr.Internal)
	}
	if got, want := apperr.MessageOf(err), "internal error"; got != want {
		t.Errorf("Validate with a rule that does not compile: message %q, want %q", got, want)
	}
}

// TestInvalidStreamMessage: a stream message that breaks its rules makes RecvMsg return an
// *grpcserver.InvalidMessageError holding the message as received and the error a unary call gets;
// returned by the handler, it ends the stream with that error's status, as any other stream's does.
func TestInvalidStreamMessage(t *testing.T) {
	var got []string // what the handler saw, per message
	points := grpc.StreamDesc{StreamName: "Points", ClientStreams: true, ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
		for {
			m := &geov1.LatLng{}
			err := ss.RecvMsg(m)
			var invalid *grpcserver.InvalidMessageError
			if !errors.As(err, &invalid) {
				got = append(got, fmt.Sprintf("%g: %v", m.GetLatitude(), err))
				if err != nil {
					return err
				}
				continue
			}
			got = append(got, fmt.Sprintf("%g invalid, same message %v: %s", m.GetLatitude(), invalid.Message == m, apperr.MessageOf(invalid.Err)))
			return err
		}
	}}
	desc := grpc.ServiceDesc{ServiceName: "lastmile.grpcservertest.Points", HandlerType: (*any)(nil), Streams: []grpc.StreamDesc{points}}
	_, conn := startServer(t, grpcserver.Config{Policy: policyFor(&desc, auth.Public(), nil)}, func(s *grpc.Server) { s.RegisterService(&desc, struct{}{}) })

	stream, err := conn.NewStream(callCtx(t), &points, "/lastmile.grpcservertest.Points/Points")
	if err != nil {
		t.Fatal(err)
	}
	for _, lat := range []float64{52.5, 91} {
		if err := stream.SendMsg(&geov1.LatLng{Latitude: lat}); err != nil {
			t.Fatalf("send %g: %v", lat, err)
		}
	}
	err = stream.RecvMsg(&geov1.LatLng{})
	st := status.Convert(err)
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	const sentence = "latitude must be between -90 and 90"
	if st.Code() != codes.InvalidArgument || st.Message() != sentence || !slices.Equal(fields, []string{"latitude"}) {
		t.Errorf("stream ended with %v (fields %q), want InvalidArgument %q with field latitude", err, fields, sentence)
	}
	want := []string{"52.5: <nil>", "91 invalid, same message true: " + sentence}
	if !slices.Equal(got, want) {
		t.Errorf("the handler saw %q, want %q", got, want)
	}
}
