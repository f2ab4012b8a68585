package grpcserver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
)

func ExampleNew() {
	srv, err := grpcserver.New(grpcserver.Config{
		Addr: "127.0.0.1:0",
		// Production servers set TLS from tlsutil.ServerConfig; without it the server logs a warning.
		Policy: auth.Policy{
			"/lastmile.route.v1.RouteService/EstimateRoute": auth.Users(),
			"/lastmile.route.v1.RouteService/ComputeMatrix": auth.Users().Or(auth.Internal("dispatch")),
		},
		RateLimit: grpcserver.RateLimit{RPS: 50},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	routev1.RegisterRouteServiceServer(srv.GRPC(), fakeRoute{})

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()

	health, err := healthpb.NewHealthClient(conn).Check(callCtx,
		&healthpb.HealthCheckRequest{Service: "lastmile.route.v1.RouteService"})
	fmt.Println(health.GetStatus(), err)

	// No token: the policy wants an authenticated user, and the handler never runs.
	_, err = routev1.NewRouteServiceClient(conn).EstimateRoute(callCtx, &routev1.EstimateRouteRequest{
		Origin:        &geov1.LatLng{Latitude: 52.52, Longitude: 13.40},
		Destination:   &geov1.LatLng{Latitude: 52.50, Longitude: 13.45},
		TransportMode: geov1.TransportMode_TRANSPORT_MODE_BICYCLE,
	})
	fmt.Println(status.Code(err))

	conn.Close()
	stop()
	fmt.Println(<-served)
	// Output:
	// SERVING <nil>
	// Unauthenticated
	// <nil>
}

// A readiness check decides the health of the services it names: here the route service's (pretend)
// database is down, so it reports NOT_SERVING, and so does the overall status "" and Ready, while the
// health service itself, which no check names, keeps SERVING.
func ExampleServer_AddReadiness() {
	srv, err := grpcserver.New(grpcserver.Config{
		Addr:   "127.0.0.1:0",
		Policy: auth.Policy{"/lastmile.route.v1.RouteService/EstimateRoute": auth.Users(), "/lastmile.route.v1.RouteService/ComputeMatrix": auth.Users()},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	routev1.RegisterRouteServiceServer(srv.GRPC(), fakeRoute{})
	srv.AddReadiness(func(context.Context) error { return errors.New("route database unreachable") },
		"lastmile.route.v1.RouteService")

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, service := range []string{"lastmile.route.v1.RouteService", "grpc.health.v1.Health", ""} {
		resp, err := healthpb.NewHealthClient(conn).Check(callCtx, &healthpb.HealthCheckRequest{Service: service})
		fmt.Printf("%q: %v %v\n", service, resp.GetStatus(), err)
	}
	fmt.Println(srv.Ready(callCtx))

	conn.Close()
	// A process stops in steps, edge first: Drain, then (once its gateway has finished) Shutdown.
	srv.Drain()
	fmt.Println(srv.Shutdown(callCtx), <-served)
	// Output:
	// "lastmile.route.v1.RouteService": NOT_SERVING <nil>
	// "grpc.health.v1.Health": SERVING <nil>
	// "": NOT_SERVING <nil>
	// route database unreachable
	// <nil> <nil>
}

// Stream limits are declared per method. Here the health service's Watch stream is capped at one per
// caller: a client's second watch is refused while its first stays open.
func ExampleStreamLimit() {
	srv, err := grpcserver.New(grpcserver.Config{
		Addr:    "127.0.0.1:0",
		Streams: map[string]grpcserver.StreamLimit{"/grpc.health.v1.Health/Watch": {PerCaller: 1, Total: 100}},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	health := healthpb.NewHealthClient(conn)
	for range 2 {
		watch, err := health.Watch(callCtx, &healthpb.HealthCheckRequest{})
		if err != nil {
			fmt.Println(err)
			return
		}
		if resp, err := watch.Recv(); err != nil {
			fmt.Println(status.Code(err), status.Convert(err).Message())
		} else {
			fmt.Println(resp.GetStatus())
		}
	}

	cancel()
	conn.Close()
	stop()
	fmt.Println(<-served)
	// Output:
	// SERVING
	// ResourceExhausted too many open streams of Watch: at most 1 per caller
	// <nil>
}
