package grpcapi_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/identity"
	"lastmile/internal/identity/grpcapi"
	"lastmile/internal/identity/identitytest"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every wait of these tests.
const testTimeout = 60 * time.Second

const password = "correct horse battery"

// env is an identity server over bufconn with the real interceptor chain, and clients for it.
type env struct {
	store identity.Store
	svc   *identity.Service
	users identityv1.UserServiceClient
	auth  identityv1.AuthServiceClient
}

func start(t *testing.T) *env {
	t.Helper()
	store, feed := identitytest.SQLite(t)
	svc := identity.NewService(store, &identitytest.Hasher{}, &identitytest.Issuer{}, identity.Options{
		ClientKey: grpcauth.ClientKey,
		Feed:      feed,
	})
	keys := identity.NewKeyManager(store, identity.KeyOptions{})
	_, conn := grpctest.Start(t, grpcserver.Config{
		Policy:        grpcapi.Policy(),
		Authenticator: grpctest.HeaderAuthenticator{},
	}, func(s *grpc.Server) { grpcapi.Register(s, svc, keys) })
	// After Start, so that it stops first, as a process shutdown does.
	grpctest.Go(t, "identity.Service.Run", svc.Run)
	return &env{store: store, svc: svc, users: identityv1.NewUserServiceClient(conn), auth: identityv1.NewAuthServiceClient(conn)}
}

// callAs returns a context for one call by p, bounded by testTimeout.
func callAs(t *testing.T, p auth.Principal) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return grpctest.CallAs(ctx, p)
}

// call returns a context for one anonymous call, bounded by testTimeout.
func call(t *testing.T) context.Context {
	t.Helper()
	return callAs(t, auth.Principal{})
}

// asUser returns a call context for user id with roles.
func asUser(t *testing.T, id string, roles ...string) context.Context {
	t.Helper()
	return callAs(t, auth.Principal{Kind: auth.User, Subject: id, Roles: roles})
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
