package bench_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"lastmile/internal/platform/auth"
)

// inproc is a grpc.ClientConnInterface that calls a service's unary handlers directly, as a function
// call: no HTTP/2, no marshalling, no interceptors (no authentication, authorization, validation,
// metrics or logs), the request and the response copied with proto.Merge and the caller's principal put
// in the context as the authentication interceptor would. Streams go to fallback, a real connection.
//
// It is not something production may do (DESIGN.md §3: services call each other through gRPC clients,
// in the all-in-one process too); the load test uses it only for the "transport" ablation
// (LASTMILE_DISPATCH_LOAD_ABLATE=transport), to measure what the services' gRPC between each other
// costs an assignment, the bound on what any change to the transport could win.
type inproc struct {
	caller   auth.Principal
	methods  map[string]func(ctx context.Context, dec func(any) error) (any, error)
	fallback grpc.ClientConnInterface
}

func newInproc(caller auth.Principal, fallback grpc.ClientConnInterface) *inproc {
	return &inproc{caller: caller, fallback: fallback, methods: map[string]func(context.Context, func(any) error) (any, error){}}
}

// RegisterService implements grpc.ServiceRegistrar.
func (c *inproc) RegisterService(desc *grpc.ServiceDesc, impl any) {
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = func(ctx context.Context, dec func(any) error) (any, error) {
			return m.Handler(impl, ctx, dec, nil)
		}
	}
}

func (c *inproc) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	h, ok := c.methods[method]
	if !ok {
		return c.fallback.Invoke(ctx, method, args, reply, opts...)
	}
	out, err := h(auth.WithPrincipal(ctx, c.caller), func(v any) error {
		proto.Merge(v.(proto.Message), args.(proto.Message))
		return nil
	})
	if err != nil {
		return err
	}
	r, ok := reply.(proto.Message)
	if !ok {
		return fmt.Errorf("inproc: reply %T is not a proto message", reply)
	}
	proto.Reset(r)
	proto.Merge(r, out.(proto.Message))
	return nil
}

func (c *inproc) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.fallback.NewStream(ctx, desc, method, opts...)
}
