package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/courier"
	"lastmile/internal/courier/couriertest"
	couriergrpc "lastmile/internal/courier/grpcapi"
	couriersqlite "lastmile/internal/courier/sqlite"
	"lastmile/internal/identity"
	identitygrpc "lastmile/internal/identity/grpcapi"
	"lastmile/internal/identity/identitytest"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
)

// streamsTimeout bounds every call of these tests.
const streamsTimeout = 10 * time.Second

// TestStreamLimitsNameServedStreams checks every module's stream limits against the generated
// descriptors: each names a streaming method of one of the module's own services, with idle timeouts its
// kind can honour (the server checks the same at startup, for the modules it hosts).
func TestStreamLimitsNameServedStreams(t *testing.T) {
	for _, m := range modules() {
		methods := map[string]protoreflect.MethodDescriptor{}
		for _, s := range m.services {
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(s.name))
			if err != nil {
				t.Fatalf("service %s: %v", s.name, err)
			}
			sd := d.(protoreflect.ServiceDescriptor)
			for i := range sd.Methods().Len() {
				md := sd.Methods().Get(i)
				methods["/"+s.name+"/"+string(md.Name())] = md
			}
		}
		for full, lim := range m.streams {
			md, ok := methods[full]
			switch {
			case !ok:
				t.Errorf("module %s limits %s, which is not a method of its services", m.name, full)
			case !md.IsStreamingClient() && !md.IsStreamingServer():
				t.Errorf("module %s limits %s, which does not stream", m.name, full)
			case lim.Idle > 0 && !md.IsStreamingClient():
				t.Errorf("module %s: %s has an Idle timeout but its client does not stream", m.name, full)
			case lim.HalfClosedIdle > 0 && !(md.IsStreamingClient() && md.IsStreamingServer()):
				t.Errorf("module %s: %s has a HalfClosedIdle timeout but is not bidirectional", m.name, full)
			}
		}
	}
	got := streamLimits(modules(), map[string]bool{"courier": true})
	if _, ok := got[identityv1.UserService_UserActivity_FullMethodName]; ok || len(got) != len(courierStreams) {
		t.Errorf("streamLimits(courier only) = %v, want the courier module's limits alone", got)
	}
}

// wantStreamStatus fails unless err is a status with code and message.
func wantStreamStatus(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	if st, _ := status.FromError(err); st.Code() != code || st.Message() != msg {
		t.Fatalf("%s = %v, want %v %q", what, err, code, msg)
	}
}

// streamCtx returns a context for one stream by p, canceled when the test ends.
func streamCtx(t *testing.T, p auth.Principal) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamsTimeout)
	t.Cleanup(cancel)
	return grpctest.CallAs(ctx, p)
}

// startCourierWithLimits serves a courier service on SQLite with its module's policy and stream limits,
// and makes one courier available, so that every watch opens with a snapshot event.
func startCourierWithLimits(t *testing.T) courierv1.CourierServiceClient {
	t.Helper()
	ctx := context.Background()
	db := databasetest.SQLite(t)
	if err := database.MigrateSQLite(ctx, db, couriersqlite.Migrations()); err != nil {
		t.Fatal(err)
	}
	const courierUser = "0190b000-0000-7000-8000-000000000001"
	users := couriertest.NewUsers(courier.UserInfo{ID: courierUser, Role: auth.RoleCourier, Status: courier.UserActive, DisplayName: "Courier 1"})
	svc := courier.NewService(couriersqlite.New(db), users, courier.Options{})
	if err := svc.Load(ctx); err != nil {
		t.Fatal(err)
	}
	admin := auth.WithPrincipal(ctx, auth.Principal{Kind: auth.User, Subject: "0190b000-0000-7000-8000-000000000900", Roles: []string{auth.RoleAdmin}})
	c, err := svc.RegisterCourier(admin, courier.RegisterRequest{UserID: courierUser, Mode: courier.ModeCar, Capacity: 2})
	if err != nil {
		t.Fatalf("RegisterCourier() = %v", err)
	}
	if _, err := svc.SetStatus(admin, c.ID, courier.StatusAvailable); err != nil {
		t.Fatalf("SetStatus(available) = %v", err)
	}
	m := courierModule()
	_, conn := grpctest.Start(t, grpcserver.Config{
		Policy:        m.policy(),
		Authenticator: grpctest.HeaderAuthenticator{},
		Streams:       streamLimits([]*module{m}, map[string]bool{m.name: true}),
	}, func(s *grpc.Server) { couriergrpc.Register(s, couriergrpc.NewServer(svc)) })
	return courierv1.NewCourierServiceClient(conn)
}

// TestWatchCouriersLimits checks the caps of WatchCouriers, which the courier service once enforced
// itself: one caller cannot open watches without bound (each holds an event per courier and is visited by
// every accepted fix), another caller has a budget of its own, and all callers together are bounded.
func TestWatchCouriersLimits(t *testing.T) {
	client := startCourierWithLimits(t)
	lim := courierStreams[courierv1.CourierService_WatchCouriers_FullMethodName]
	dispatcher := func(n int) auth.Principal {
		return auth.Principal{Kind: auth.User, Subject: fmt.Sprintf("0190b000-0000-7000-8000-%012d", 100+n), Roles: []string{auth.RoleDispatcher}}
	}
	watch := func(p auth.Principal) error {
		stream, err := client.WatchCouriers(streamCtx(t, p), &courierv1.WatchCouriersRequest{})
		if err != nil {
			return err
		}
		_, err = stream.Recv() // the snapshot: the watch is open
		return err
	}
	for i := range lim.PerCaller {
		if err := watch(dispatcher(0)); err != nil {
			t.Fatalf("watch %d of %d by one caller: %v", i+1, lim.PerCaller, err)
		}
	}
	wantStreamStatus(t, "one watch over the caller's cap", watch(dispatcher(0)), codes.ResourceExhausted,
		"too many open streams of WatchCouriers: at most 8 per caller")
	// Other callers have budgets of their own, up to the total: 256 watches, 8 by each of 32 callers.
	if lim.PerCaller != 8 || lim.Total != 256 {
		t.Fatalf("WatchCouriers limit = %+v, want 8 per caller and 256 in all", lim)
	}
	for n := 1; n < lim.Total/lim.PerCaller; n++ {
		for i := range lim.PerCaller {
			if err := watch(dispatcher(n)); err != nil {
				t.Fatalf("watch %d of caller %d: %v", i+1, n, err)
			}
		}
	}
	wantStreamStatus(t, "a watch over the total", watch(dispatcher(lim.Total)), codes.ResourceExhausted,
		"too many open streams of WatchCouriers; try again later")
}

// startIdentityWithLimits serves an identity service on SQLite with its module's policy and the given
// stream limits.
func startIdentityWithLimits(t *testing.T, limits map[string]grpcserver.StreamLimit) identityv1.UserServiceClient {
	t.Helper()
	store, feed := identitytest.SQLite(t)
	svc := identity.NewService(store, &identitytest.Hasher{}, &identitytest.Issuer{}, identity.Options{Feed: feed})
	keys := identity.NewKeyManager(store, identity.KeyOptions{})
	_, conn := grpctest.Start(t, grpcserver.Config{
		Policy:        identityModule().policy(),
		Authenticator: grpctest.HeaderAuthenticator{},
		Streams:       limits,
	}, func(s *grpc.Server) { identitygrpc.Register(s, svc, keys) })
	grpctest.Go(t, "identity activity", svc.Run)
	return identityv1.NewUserServiceClient(conn)
}

// follow opens a UserActivity stream by customer id, following themselves, and waits for the
// confirmation.
func follow(t *testing.T, users identityv1.UserServiceClient, id string) (identityv1.UserService_UserActivityClient, error) {
	t.Helper()
	stream, err := users.UserActivity(streamCtx(t, auth.Principal{Kind: auth.User, Subject: id, Roles: []string{auth.RoleCustomer}}))
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&identityv1.UserActivityRequest{SubscribeUserIds: []string{id}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if _, err := stream.Recv(); err != nil {
		return nil, err
	}
	return stream, nil
}

// TestUserActivityLimits checks the repro of the review: one customer cannot open UserActivity streams
// without bound.
func TestUserActivityLimits(t *testing.T) {
	users := startIdentityWithLimits(t, identityStreams)
	lim := identityStreams[identityv1.UserService_UserActivity_FullMethodName]
	const customer = "0190b000-0000-7000-8000-000000000301"
	for i := range lim.PerCaller {
		if _, err := follow(t, users, customer); err != nil {
			t.Fatalf("stream %d of %d: %v", i+1, lim.PerCaller, err)
		}
	}
	_, err := follow(t, users, customer)
	wantStreamStatus(t, "one UserActivity stream over the cap", err, codes.ResourceExhausted,
		fmt.Sprintf("too many open streams of UserActivity: at most %d per caller", lim.PerCaller))
	if _, err := follow(t, users, "0190b000-0000-7000-8000-000000000302"); err != nil {
		t.Errorf("a stream of another customer: %v", err)
	}
}

// TestUserActivityHalfClosedIsEnded checks that a UserActivity stream whose client half-closed and that
// has nothing to send is ended with DeadlineExceeded. The module's timeout is a minute; the test shortens
// it, which changes when the stream ends, not how.
func TestUserActivityHalfClosedIsEnded(t *testing.T) {
	limits := maps.Clone(identityStreams)
	lim := limits[identityv1.UserService_UserActivity_FullMethodName]
	if lim.HalfClosedIdle != time.Minute {
		t.Fatalf("UserActivity HalfClosedIdle = %v, want 1m", lim.HalfClosedIdle)
	}
	lim.HalfClosedIdle = 10 * time.Millisecond
	limits[identityv1.UserService_UserActivity_FullMethodName] = lim
	users := startIdentityWithLimits(t, limits)
	stream, err := follow(t, users, "0190b000-0000-7000-8000-000000000303")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("CloseSend() = %v", err)
	}
	_, err = stream.Recv()
	wantStreamStatus(t, "Recv() on a half-closed, quiet stream", err, codes.DeadlineExceeded,
		"stream idle: half-closed by the client and nothing sent for 10ms")
}

// TestUserActivityKeepsSlotsForAdmins: customers following themselves from many accounts cannot take
// UserActivity's last activityStaffReserve slots, which an admin's users dashboard still gets. The
// module's total is 1,024; the test shrinks it and the reserve with it, which changes how many streams
// it takes to get there, not who may take the reserve.
func TestUserActivityKeepsSlotsForAdmins(t *testing.T) {
	limits := maps.Clone(identityStreams)
	lim := limits[identityv1.UserService_UserActivity_FullMethodName]
	if lim.Total != 1024 || lim.StaffReserve != 64 || lim.FirstReserve != 480 || lim.SendTimeout != 30*time.Second {
		t.Fatalf("UserActivity limit = %+v, want 1024 in all, 64 kept for staff, 480 for first streams, a 30s send timeout", lim)
	}
	lim.Total, lim.StaffReserve, lim.FirstReserve = 6, 2, 0
	limits[identityv1.UserService_UserActivity_FullMethodName] = lim
	users := startIdentityWithLimits(t, limits)
	for i := range 4 {
		if _, err := follow(t, users, fmt.Sprintf("0190b000-0000-7000-8000-00000000040%d", i)); err != nil {
			t.Fatalf("customer %d's stream: %v", i, err)
		}
	}
	_, err := follow(t, users, "0190b000-0000-7000-8000-000000000409")
	wantStreamStatus(t, "a fifth customer's stream, with two slots left for staff", err, codes.ResourceExhausted,
		"too many open streams of UserActivity; try again later")
	admin := auth.Principal{Kind: auth.User, Subject: "0190b000-0000-7000-8000-000000000410", Roles: []string{auth.RoleAdmin}}
	for i := range 2 {
		stream, err := users.UserActivity(streamCtx(t, admin))
		if err == nil {
			err = stream.Send(&identityv1.UserActivityRequest{SubscribeUserIds: []string{"0190b000-0000-7000-8000-000000000400"}})
		}
		if err == nil {
			_, err = stream.Recv()
		}
		if err != nil {
			t.Fatalf("the admin's stream %d in the staff's reserve: %v", i+1, err)
		}
	}
}
