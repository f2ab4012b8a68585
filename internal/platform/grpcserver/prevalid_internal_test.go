package grpcserver

import (
	"context"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"lastmile/internal/platform/apperr"
)

// prevalidator answers Prevalid with ok.
type prevalidator struct{ ok bool }

func (p prevalidator) Prevalid(any) bool { return p.ok }

// countMessage returns a message with one field, count, whose rule is `int32.gte = 0`.
func countMessage(t *testing.T, count int32) proto.Message {
	t.Helper()
	opts := &descriptorpb.FieldOptions{}
	proto.SetExtension(opts, validate.E_Field, &validate.FieldRules{Type: &validate.FieldRules_Int32{Int32: &validate.Int32Rules{
		GreaterThan: &validate.Int32Rules_Gte{Gte: 0},
	}}})
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("lastmile/grpcservertest/" + t.Name() + ".proto"),
		Package:    proto.String("lastmile.grpcservertest"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"buf/validate/validate.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Count"),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name: proto.String("count"), Number: proto.Int32(1), JsonName: proto.String("count"), Options: opts,
				Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum(),
			}},
		}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("build test descriptor: %v", err)
	}
	md := fd.Messages().Get(0)
	m := dynamicpb.NewMessage(md)
	m.Set(md.Fields().ByName("count"), protoreflect.ValueOfInt32(count))
	return m
}

// TestValidateUnaryAsksThePrevalidator: a request the service's Prevalid accepts reaches the handler
// without protovalidate (so a Prevalid that accepted an invalid request would let it through: its
// contract is the implementer's); one it does not accept is validated as without a Prevalidator.
func TestValidateUnaryAsksThePrevalidator(t *testing.T) {
	v, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	c := &chain{validator: v}
	handler := func(context.Context, any) (any, error) { return "handled", nil }
	tests := []struct {
		name    string
		server  any
		count   int32
		wantErr bool
	}{
		{"no prevalidator, valid", struct{}{}, 1, false},
		{"no prevalidator, invalid", struct{}{}, -1, true},
		{"prevalid", prevalidator{true}, -1, false},
		{"not prevalid, valid", prevalidator{false}, 1, false},
		{"not prevalid, invalid", prevalidator{false}, -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.validateUnary(t.Context(), countMessage(t, tt.count), &grpc.UnaryServerInfo{Server: tt.server, FullMethod: "/s/M"}, handler)
			if tt.wantErr {
				if apperr.CodeOf(err) != apperr.Invalid || resp != nil {
					t.Errorf("validateUnary() = %v, %v, want nil and an Invalid error", resp, err)
				}
				return
			}
			if err != nil || resp != "handled" {
				t.Errorf("validateUnary() = %v, %v, want handled", resp, err)
			}
		})
	}
}
