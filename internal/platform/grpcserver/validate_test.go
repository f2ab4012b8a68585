package grpcserver_test

import (
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"lastmile/internal/platform/apperr"
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
