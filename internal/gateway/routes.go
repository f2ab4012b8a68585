package gateway

import (
	"context"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
)

// Routes adapts a service's generated grpc-gateway registration, Register<Service>HandlerClient with its
// New<Service>Client, to Service.Register, so that the service's routes call it over any connection: a
// *grpc.ClientConn, or a gRPC server's in-process connection. For example:
//
//	gateway.Routes(routev1.RegisterRouteServiceHandlerClient, routev1.NewRouteServiceClient)
func Routes[C any](register func(context.Context, *runtime.ServeMux, C) error, newClient func(grpc.ClientConnInterface) C) func(context.Context, *runtime.ServeMux, grpc.ClientConnInterface) error {
	return func(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
		return register(ctx, mux, newClient(conn))
	}
}
