package grpcclient_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcclient"
	"lastmile/internal/platform/grpcserver"
)

type routeServer struct {
	routev1.UnimplementedRouteServiceServer
}

func (routeServer) EstimateRoute(context.Context, *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
	return &routev1.RouteEstimate{DistanceMeters: 4200, Provider: "geodesic"}, nil
}

func ExampleNew() {
	// A route server to talk to. Production servers and clients both use TLS from tlsutil.
	srv, err := grpcserver.New(grpcserver.Config{
		Addr: "127.0.0.1:0",
		Policy: auth.Policy{
			"/lastmile.route.v1.RouteService/EstimateRoute": auth.Public(),
			"/lastmile.route.v1.RouteService/ComputeMatrix": auth.Public(),
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	routev1.RegisterRouteServiceServer(srv.GRPC(), routeServer{})
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() { stop(); <-served }()

	conn, err := grpcclient.New(grpcclient.Config{
		// Also "dns:///route:9090", or replicas "10.0.0.1:9090,10.0.0.2:9090".
		Target:      srv.Addr().String(),
		ServiceName: "lastmile.route.v1.RouteService",
		Timeout:     2 * time.Second, // for calls whose context has no deadline
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	est, err := routev1.NewRouteServiceClient(conn).EstimateRoute(ctx, &routev1.EstimateRouteRequest{
		Origin:        &geov1.LatLng{Latitude: 52.52, Longitude: 13.40},
		Destination:   &geov1.LatLng{Latitude: 52.50, Longitude: 13.45},
		TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(est.GetDistanceMeters(), est.GetProvider())
	// Output: 4200 geodesic
}
