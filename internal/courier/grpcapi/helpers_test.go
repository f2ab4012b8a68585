package grpcapi_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	"lastmile/internal/courier"
	"lastmile/internal/courier/couriertest"
	"lastmile/internal/courier/grpcapi"
	"lastmile/internal/courier/sqlite"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTimeout = 60 * time.Second

// testNow is the service's clock in tests that do not set their own: a fixed instant, so that no test
// depends on the wall clock's hour.
var testNow = time.Date(2031, 3, 14, 9, 20, 0, 0, time.UTC)

// env is a courier service on the SQLite store, served over bufconn through grpcserver's full
// interceptor chain.
type env struct {
	client courierv1.CourierServiceClient
	api    *grpcapi.Server
	svc    *courier.Service
	users  *couriertest.Users
	// stopRun ends the service's Run, as a process shutdown does: watches end with Unavailable.
	stopRun func()
}

// start serves a new courier service; opts.Now defaults to the fixed testNow.
func start(t testing.TB, opts courier.Options) *env {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	db := databasetest.SQLite(t)
	if err := database.MigrateSQLite(context.Background(), db, sqlite.Migrations()); err != nil {
		t.Fatal(err)
	}
	e := &env{users: couriertest.NewUsers()}
	e.svc = courier.NewService(sqlite.New(db), e.users, opts)
	if err := e.svc.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.api = grpcapi.NewServer(e.svc)
	_, conn := grpctest.Start(t, grpcserver.Config{
		Policy:        grpcapi.Policy(),
		Authenticator: grpctest.HeaderAuthenticator{},
	}, func(s *grpc.Server) { grpcapi.Register(s, e.api) })
	e.client = courierv1.NewCourierServiceClient(conn)
	// After Start, so that it stops first, as a process shutdown does: open watches end and the graceful
	// stop need not wait for them.
	e.stopRun = grpctest.Go(t, "courier.Service.Run", e.svc.Run)
	return e
}

func userID(n int) string { return fmt.Sprintf("0190b000-0000-7000-8000-%012d", n) }
func taskID(n int) string { return fmt.Sprintf("0190c000-0000-7000-8000-%012d", n) }

// callCtx is a context for one call by p, bounded by testTimeout.
func callCtx(t testing.TB, p auth.Principal) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return grpctest.CallAs(ctx, p)
}

// as is user n with role.
func as(n int, role string) auth.Principal {
	return auth.Principal{Kind: auth.User, Subject: userID(n), Roles: []string{role}}
}

// service is the service principal name.
func service(name string) auth.Principal { return auth.Principal{Kind: auth.Service, Subject: name} }

// anonymous is a caller without credentials.
var anonymous = auth.Principal{}

var (
	admin      = as(900, auth.RoleAdmin)
	dispatcher = as(901, auth.RoleDispatcher)
	dispatch   = service("dispatch")
)

func wantStatus(t testing.TB, call string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s error = %v, want code %v", call, err, want)
	}
}

// courierUser registers courier user n as a courier over the API and returns the courier.
func (e *env) courierUser(t testing.TB, n int, capacity int32) *courierv1.Courier {
	t.Helper()
	e.users.Put(courier.UserInfo{ID: userID(n), Role: auth.RoleCourier, Status: courier.UserActive,
		DisplayName: fmt.Sprintf("Courier %d", n)})
	c, err := e.client.RegisterCourier(callCtx(t, dispatcher), &courierv1.RegisterCourierRequest{
		UserId: userID(n), TransportMode: 3 /* car */, Capacity: capacity})
	if err != nil {
		t.Fatalf("RegisterCourier(user %d): %v", n, err)
	}
	return c
}
