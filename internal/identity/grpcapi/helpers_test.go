package grpcapi_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/identity"
	"lastmile/internal/identity/grpcapi"
	"lastmile/internal/identity/identitytest"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
	"lastmile/internal/platform/grpcserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every wait of these tests.
const testTimeout = 10 * time.Second

const password = "correct horse battery"

// headerAuthenticator makes test principals from metadata: "x-test-user: id" with "x-test-roles: a,b" is
// a user, "x-test-service: name" a service, anything else anonymous; "x-test-via" sets Via.
type headerAuthenticator struct{}

func (headerAuthenticator) Authenticate(_ context.Context, md metadata.MD) (auth.Principal, error) {
	var p auth.Principal
	if v := md.Get("x-test-user"); len(v) == 1 {
		p = auth.Principal{Kind: auth.User, Subject: v[0]}
		if r := md.Get("x-test-roles"); len(r) == 1 {
			p.Roles = strings.Split(r[0], ",")
		}
	} else if v := md.Get("x-test-service"); len(v) == 1 {
		p = auth.Principal{Kind: auth.Service, Subject: v[0]}
	}
	if v := md.Get("x-test-via"); len(v) == 1 {
		p.Via = v[0]
	}
	return p, nil
}

// env is an identity server over bufconn with the real interceptor chain, and clients for it.
type env struct {
	store identity.Store
	svc   *identity.Service
	users identityv1.UserServiceClient
	auth  identityv1.AuthServiceClient
}

func start(t *testing.T) *env {
	t.Helper()
	store := identitytest.SQLiteStore(t)
	svc := identity.NewService(store, &identitytest.Hasher{}, &identitytest.Issuer{}, identity.Options{
		ClientKey:    grpcauth.ClientKey,
		ActivityPoll: 10 * time.Millisecond,
	})
	keys := identity.NewKeyManager(store, identity.KeyOptions{})
	lis := bufconn.Listen(1 << 20)
	srv, err := grpcserver.New(grpcserver.Config{
		Listener:      lis,
		Policy:        grpcapi.Policy(),
		Authenticator: headerAuthenticator{},
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("grpcserver.New() = %v", err)
	}
	grpcapi.Register(srv.GRPC(), svc, keys)

	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	ran := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	go func() { ran <- svc.Run(ctx) }()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient() = %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		for name, c := range map[string]chan error{"Serve": served, "Run": ran} {
			select {
			case err := <-c:
				if err != nil {
					t.Errorf("%s() = %v, want nil", name, err)
				}
			case <-time.After(testTimeout):
				t.Errorf("%s did not return within %v of cancel", name, testTimeout)
			}
		}
	})
	return &env{store: store, svc: svc, users: identityv1.NewUserServiceClient(conn), auth: identityv1.NewAuthServiceClient(conn)}
}

// call returns a context for one call, bounded by testTimeout, carrying the metadata pairs kv.
func call(t *testing.T, kv ...string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	if len(kv) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	}
	return ctx
}

// asUser returns a call context for user id with roles.
func asUser(t *testing.T, id string, roles ...string) context.Context {
	return call(t, "x-test-user", id, "x-test-roles", strings.Join(roles, ","))
}

// adminID is the subject of asAdmin; no stored user has it.
const adminID = "00000000-0000-7000-8000-000000000001"

func asAdmin(t *testing.T) context.Context { return asUser(t, adminID, auth.RoleAdmin) }

// signUp creates a customer named name through the public CreateUser.
func (e *env) signUp(t *testing.T, name string) *identityv1.User {
	t.Helper()
	u, err := e.users.CreateUser(call(t), &identityv1.CreateUserRequest{
		Email: name + "@example.com", Password: password, DisplayName: "User " + name, Username: name,
	})
	if err != nil {
		t.Fatalf("CreateUser(%s) = %v", name, err)
	}
	return u
}
