package grpcapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	"lastmile/internal/courier"
	"lastmile/internal/courier/couriertest"
	"lastmile/internal/courier/grpcapi"
	"lastmile/internal/courier/sqlite"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/grpcserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTimeout = 10 * time.Second

// headerAuthenticator makes test principals from metadata: "x-test-user: <id>:<role>" is a user,
// "x-test-service: <name>" a service, anything else anonymous.
type headerAuthenticator struct{}

func (headerAuthenticator) Authenticate(_ context.Context, md metadata.MD) (auth.Principal, error) {
	if v := md.Get("x-test-user"); len(v) == 1 {
		id, role, ok := strings.Cut(v[0], ":")
		if !ok {
			return auth.Principal{}, apperr.Errorf(apperr.Unauthenticated, "bad test user")
		}
		return auth.Principal{Kind: auth.User, Subject: id, Roles: []string{role}}, nil
	}
	if v := md.Get("x-test-service"); len(v) == 1 {
		return auth.Principal{Kind: auth.Service, Subject: v[0]}, nil
	}
	return auth.Principal{}, nil
}

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
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- e.svc.Run(runCtx) }()
	e.stopRun = stopRun

	lis := bufconn.Listen(1 << 20)
	srv, err := grpcserver.New(grpcserver.Config{
		Listener:      lis,
		Policy:        grpcapi.Policy(),
		Authenticator: headerAuthenticator{},
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.api = grpcapi.NewServer(e.svc)
	grpcapi.Register(srv.GRPC(), e.api)
	serveCtx, stopServe := context.WithCancel(context.Background())
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(serveCtx) }()

	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e.client = courierv1.NewCourierServiceClient(conn)
	t.Cleanup(func() {
		conn.Close()
		stopRun() // first, so that open watches end and the graceful stop need not wait for them
		stopServe()
		for name, done := range map[string]chan error{"Run": runDone, "Serve": serveDone} {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s() = %v, want nil", name, err)
				}
			case <-time.After(testTimeout):
				t.Errorf("%s did not return", name)
			}
		}
	})
	return e
}

func userID(n int) string { return fmt.Sprintf("0190b000-0000-7000-8000-%012d", n) }
func taskID(n int) string { return fmt.Sprintf("0190c000-0000-7000-8000-%012d", n) }

// callCtx is a context for one call by the given principal: "service:<name>" or "<user id>:<role>".
func callCtx(t testing.TB, who string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	if name, ok := strings.CutPrefix(who, "service:"); ok {
		return metadata.AppendToOutgoingContext(ctx, "x-test-service", name)
	}
	if who == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "x-test-user", who)
}

func as(n int, role string) string { return userID(n) + ":" + role }

var (
	admin      = as(900, auth.RoleAdmin)
	dispatcher = as(901, auth.RoleDispatcher)
	dispatch   = "service:dispatch"
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
