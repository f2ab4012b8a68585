package cli

import (
	"context"
	"fmt"
	"time"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/courier"
	couriergrpc "lastmile/internal/courier/grpcapi"
	"lastmile/internal/courier/identityclient"
	courierpg "lastmile/internal/courier/postgres"
	couriersqlite "lastmile/internal/courier/sqlite"
	"lastmile/internal/gateway"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/grpcserver"
)

var errIdentityUnconfigured = apperr.Errorf(apperr.Unavailable, "identity service not configured")

// courierModule declares the courier service: its store, and identity's UserService as its peer (to
// check the users it registers as couriers).
func courierModule() *module {
	return &module{
		name:     "courier",
		services: []grpcService{{name: courierv1.CourierService_ServiceDesc.ServiceName, rest: gateway.Routes(courierv1.RegisterCourierServiceHandlerClient, courierv1.NewCourierServiceClient), needsStore: true}},
		peers:    []string{identityv1.UserService_ServiceDesc.ServiceName},
		policy:   couriergrpc.Policy,
		streams:  courierStreams,
		store:    &storeDecl{SQLite: couriersqlite.Migrations(), Postgres: courierpg.Migrations()},
		start:    startCourier,
	}
}

// courierStreams bounds the courier service's streams. Every watch holds a pending event per courier it
// follows and is visited by every accepted fix, so watches are few: dashboards and dispatch. A courier app
// reports over one stream, with room for a reconnect that overlaps the old stream; a stream that sends no
// fix for two minutes (an app that opened it and went quiet) is ended, and the app opens a new one when it
// has fixes again.
var courierStreams = map[string]grpcserver.StreamLimit{
	courierv1.CourierService_WatchCouriers_FullMethodName:   {PerCaller: 8, Total: 256},
	courierv1.CourierService_ReportLocations_FullMethodName: {PerCaller: 4, Total: 8192, Idle: 2 * time.Minute},
}

// startCourier opens the courier store, warms the live state (positions, claims) from it, registers the
// service and schedules its background work: the location flusher while serving, and a final flush once the
// gRPC server has stopped, so that a clean shutdown loses no accepted fix.
func startCourier(ctx context.Context, p *process, srv *grpcserver.Server) error {
	h, err := p.openStore(ctx, srv, "courier")
	if err != nil {
		return err
	}
	var store courier.Store
	if h.SQL != nil {
		store = couriersqlite.New(h.SQL)
	} else {
		pg := courierpg.New(h.Pool)
		p.cleanups = append(p.cleanups, func() { _ = pg.Close() }) // runs before the pool's: cleanups run in reverse
		store = pg
	}
	var users courier.Users = unreachableUsers{}
	if conn := p.peer(identityv1.UserService_ServiceDesc.ServiceName); conn != nil {
		users = identityclient.New(identityv1.NewUserServiceClient(conn))
	}
	svc := courier.NewService(store, users, courier.Options{Logger: p.logger, Now: p.env.Now})
	if err := svc.Load(ctx); err != nil {
		return fmt.Errorf("load courier live state: %w", err)
	}
	api := couriergrpc.NewServer(svc)
	couriergrpc.Register(srv, api)
	// Open location streams answer with their counts when the server starts stopping; apps reconnect.
	srv.OnShutdown(api.Shutdown)
	p.runners = append(p.runners, svc.Run)
	// The flusher stops when the gRPC server starts stopping, while the server still drains streams that
	// accept fixes; the final flush therefore runs after the server has stopped, before the database closes.
	p.afterStop = append(p.afterStop, func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := svc.Flush(fctx); err != nil {
			p.logger.Error("courier: final location flush failed", "error", err)
		}
	})
	p.logger.Info("courier service registered")
	return nil
}

// unreachableUsers is the Users of a courier service that has no identity service to ask.
type unreachableUsers struct{}

func (unreachableUsers) GetUser(context.Context, string) (courier.UserInfo, error) {
	return courier.UserInfo{}, errIdentityUnconfigured
}
