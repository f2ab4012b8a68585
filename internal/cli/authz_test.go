package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
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
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
	"lastmile/internal/platform/grpcserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testPrincipalKey is the metadata key by which the tests' authenticator learns whom a call runs as.
const testPrincipalKey = "x-test-principal"

// matrixPrincipals are the callers of the authorization matrix: every role, and services with and without
// rights somewhere. The gateway is an edge proxy, so its token-less calls are anonymous.
var matrixPrincipals = []string{
	"anonymous", "customer", "courier", "dispatcher", "admin",
	"service:dispatch", "service:courier", "service:gateway",
}

// wantMethods is the number of RPCs that the binary serves. Change it together with the policy.
const wantMethods = 45

// testAuthenticator maps the x-test-principal metadata to a principal the way grpcauth.ServiceAuthenticator
// would for the same credentials. Anything else is refused, so that a typo cannot pass as anonymous.
type testAuthenticator struct{}

func (testAuthenticator) Authenticate(_ context.Context, md metadata.MD) (auth.Principal, error) {
	v := md.Get(testPrincipalKey)
	if len(v) != 1 {
		return auth.Principal{}, apperr.Errorf(apperr.Unauthenticated, "want one %s entry", testPrincipalKey)
	}
	return principalOf(v[0])
}

func principalOf(name string) (auth.Principal, error) {
	switch name {
	case "anonymous":
		return auth.Principal{}, nil
	case "customer", "courier", "dispatcher", "admin":
		return auth.Principal{Kind: auth.User, Subject: "user-" + name, Roles: []string{name}}, nil
	}
	if svc, ok := strings.CutPrefix(name, "service:"); ok && svc != "" {
		if slices.Contains(grpcauth.DefaultEdgeProxies, svc) {
			return auth.Principal{Kind: auth.Anonymous, Via: svc}, nil
		}
		return auth.Principal{Kind: auth.Service, Subject: svc}, nil
	}
	return auth.Principal{}, apperr.Errorf(apperr.Unauthenticated, "unknown test principal %q", name)
}

// expectedCode computes, from the rule's fields alone, the code a call by p ends with at the authorization
// gate: OK when the rule admits p (the call goes on to validation and the handler), else Unauthenticated
// for an anonymous caller and PermissionDenied for anyone else. It restates the documented meaning of
// auth.Rule instead of calling the policy, so that it checks the policy code too.
func expectedCode(r auth.Rule, p auth.Principal) codes.Code {
	admitted := r.Public
	switch p.Kind {
	case auth.Anonymous:
		admitted = admitted || r.Capability
	case auth.User:
		anyUser := r.Authenticated && len(r.Roles) == 0
		admitted = admitted || anyUser || slices.ContainsFunc(r.Roles, func(role string) bool { return slices.Contains(p.Roles, role) })
	case auth.Service:
		admitted = admitted || slices.Contains(r.Services, p.Subject)
	}
	switch {
	case admitted:
		return codes.OK
	case p.Kind == auth.Anonymous:
		return codes.Unauthenticated
	default:
		return codes.PermissionDenied
	}
}

// TestAuthorizationMatrix calls every RPC of the binary's policy as every kind of principal through the
// real server and interceptor chain, with unimplemented handlers behind it, and checks that the gate lets
// exactly the callers the policy names through: a refused call ends with Unauthenticated or
// PermissionDenied before any handler runs, an admitted one reaches validation (InvalidArgument, for an
// empty request) or the handler (Unimplemented).
func TestAuthorizationMatrix(t *testing.T) {
	pol := policy()

	// The services of the policy, from the generated descriptors; every method they have needs a rule and
	// every rule must name a method they have.
	byService := map[protoreflect.FullName]protoreflect.ServiceDescriptor{}
	for full := range pol {
		svc, _, ok := strings.Cut(strings.TrimPrefix(full, "/"), "/")
		if !ok {
			t.Fatalf("policy rule %q is not a full method name", full)
		}
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			t.Fatalf("policy rule %q: service not in the generated descriptors: %v", full, err)
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			t.Fatalf("policy rule %q: %s is a %T, not a service", full, svc, d)
		}
		byService[sd.FullName()] = sd
	}
	methods := map[string]protoreflect.MethodDescriptor{}
	for _, sd := range byService {
		if err := pol.Check(grpcauth.Methods(sd)); err != nil {
			t.Error(err)
		}
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			methods["/"+string(sd.FullName())+"/"+string(md.Name())] = md
		}
	}
	for full := range pol {
		if methods[full] == nil {
			t.Errorf("policy has a rule for %s, which its service does not have", full)
		}
	}
	if len(methods) != wantMethods {
		t.Errorf("the policy's services have %d methods, want %d", len(methods), wantMethods)
	}

	conn := serveUnimplemented(t, pol)
	for _, name := range slices.Sorted(maps.Keys(byService)) {
		if _, ok := unimplementedServers[name]; !ok {
			t.Errorf("service %s is in the policy but this test registers no server for it: add its Unimplemented server", name)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cases := 0
	for _, full := range slices.Sorted(maps.Keys(methods)) {
		md, rule := methods[full], pol[full]
		for _, who := range matrixPrincipals {
			p, err := principalOf(who)
			if err != nil {
				t.Fatal(err)
			}
			want := expectedCode(rule, p)
			got := invoke(metadata.AppendToOutgoingContext(ctx, testPrincipalKey, who), conn, full, md)
			cases++
			switch {
			case want == codes.OK && got != codes.Unimplemented && got != codes.InvalidArgument:
				t.Errorf("%s as %s: code %v, want the call admitted (Unimplemented or InvalidArgument); rule: %s", full, who, got, rule)
			case want != codes.OK && got != want:
				t.Errorf("%s as %s: code %v, want %v; rule: %s", full, who, got, want, rule)
			}
		}
	}
	if want := wantMethods * len(matrixPrincipals); cases != want {
		t.Errorf("ran %d (method, principal) cases, want %d", cases, want)
	}
}

// unimplementedServers lists the services that serveUnimplemented registers, by full name.
var unimplementedServers = map[protoreflect.FullName]func(grpc.ServiceRegistrar){
	"lastmile.identity.v1.UserService": func(s grpc.ServiceRegistrar) {
		identityv1.RegisterUserServiceServer(s, identityv1.UnimplementedUserServiceServer{})
	},
	"lastmile.identity.v1.AuthService": func(s grpc.ServiceRegistrar) {
		identityv1.RegisterAuthServiceServer(s, identityv1.UnimplementedAuthServiceServer{})
	},
	"lastmile.courier.v1.CourierService": func(s grpc.ServiceRegistrar) {
		courierv1.RegisterCourierServiceServer(s, courierv1.UnimplementedCourierServiceServer{})
	},
	"lastmile.route.v1.RouteService": func(s grpc.ServiceRegistrar) {
		routev1.RegisterRouteServiceServer(s, routev1.UnimplementedRouteServiceServer{})
	},
	"lastmile.dispatch.v1.DispatchService": func(s grpc.ServiceRegistrar) {
		dispatchv1.RegisterDispatchServiceServer(s, dispatchv1.UnimplementedDispatchServiceServer{})
	},
}

// serveUnimplemented serves every registered service, unimplemented, behind the full interceptor chain
// with pol and testAuthenticator, over an in-memory listener, until the test ends.
func serveUnimplemented(t *testing.T, pol auth.Policy) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv, err := grpcserver.New(grpcserver.Config{
		Listener:        lis,
		Policy:          pol,
		Authenticator:   testAuthenticator{},
		Logger:          slog.New(slog.DiscardHandler),
		ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("grpcserver.New: %v", err)
	}
	for _, register := range unimplementedServers {
		register(srv.GRPC())
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		stop()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10s of cancellation")
		}
	})
	return conn
}

// invoke calls method generically, whatever its kind of streaming: one empty request message, then the
// response or the stream to its end, and returns the call's final code.
func invoke(ctx context.Context, conn *grpc.ClientConn, method string, md protoreflect.MethodDescriptor) codes.Code {
	desc := &grpc.StreamDesc{
		StreamName:    string(md.Name()),
		ClientStreams: md.IsStreamingClient(),
		ServerStreams: md.IsStreamingServer(),
	}
	cs, err := conn.NewStream(ctx, desc, method)
	if err != nil {
		return status.Code(err)
	}
	// A call refused early makes SendMsg report io.EOF; RecvMsg then returns the status.
	if err := cs.SendMsg(dynamicpb.NewMessage(md.Input())); err != nil && !errors.Is(err, io.EOF) {
		return status.Code(err)
	}
	if err := cs.CloseSend(); err != nil {
		return status.Code(err)
	}
	for {
		err := cs.RecvMsg(dynamicpb.NewMessage(md.Output()))
		switch {
		case errors.Is(err, io.EOF):
			return codes.OK
		case err != nil:
			return status.Code(err)
		case !desc.ServerStreams:
			return codes.OK
		}
	}
}

// TestAnonymousCallers pins down every method that an anonymous caller, direct or through the gateway,
// gets past the gate: the public ones, and the two a share link opens (Rule.Capability), whose handlers
// answer UNAUTHENTICATED without a share token. Adding one to either list is a decision to make here.
func TestAnonymousCallers(t *testing.T) {
	var public, capability []string
	for m, r := range policy() {
		if r.Public {
			public = append(public, m)
		}
		if r.Capability {
			capability = append(capability, m)
		}
	}
	slices.Sort(public)
	slices.Sort(capability)
	wantPublic := []string{
		identityv1.AuthService_GetJwks_FullMethodName,
		identityv1.AuthService_Login_FullMethodName,
		identityv1.AuthService_Logout_FullMethodName,
		identityv1.AuthService_RefreshToken_FullMethodName,
		identityv1.UserService_CreateUser_FullMethodName,
		routev1.RouteService_ComputeMatrix_FullMethodName,
		routev1.RouteService_EstimateRoute_FullMethodName,
	}
	wantCapability := []string{
		dispatchv1.DispatchService_GetTask_FullMethodName,
		dispatchv1.DispatchService_WatchTask_FullMethodName,
	}
	if !slices.Equal(public, wantPublic) {
		t.Errorf("public methods = %q, want %q", public, wantPublic)
	}
	if !slices.Equal(capability, wantCapability) {
		t.Errorf("methods open to capability holders = %q, want %q", capability, wantCapability)
	}
}
