package simulator

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
)

// fakeAuth answers RefreshToken with a new pair, counting the calls; other methods are not called.
type fakeAuth struct {
	identityv1.AuthServiceClient
	refreshes atomic.Int64
}

func (f *fakeAuth) RefreshToken(_ context.Context, in *identityv1.RefreshTokenRequest, _ ...grpc.CallOption) (*identityv1.RefreshTokenResponse, error) {
	f.refreshes.Add(1)
	return &identityv1.RefreshTokenResponse{AccessToken: "new access", RefreshToken: "new refresh",
		ExpiresAt: timestamppb.New(time.Now().Add(15 * time.Minute))}, nil
}

func TestTokenRefreshesOnceWhenConcurrent(t *testing.T) {
	fake := &fakeAuth{}
	a := &account{auth: fake, access: "old access", refresh: "old refresh", expires: time.Now().Add(time.Minute)}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if tok, err := a.token(context.Background()); err != nil || tok != "new access" {
				t.Errorf("token() = %q, %v; want the refreshed access token", tok, err)
			}
		})
	}
	wg.Wait()
	if got := fake.refreshes.Load(); got != 1 {
		t.Errorf("RefreshToken called %d times, want once (a refresh token presented twice revokes the session)", got)
	}
	if tok, _ := a.token(context.Background()); tok != "new access" || fake.refreshes.Load() != 1 {
		t.Errorf("token() of a fresh token = %q after %d refreshes, want no new refresh", tok, fake.refreshes.Load())
	}
}

// slowDispatch creates every task it is asked to (the server commits), but answers only once released,
// unless the caller gave up first.
type slowDispatch struct {
	dispatchv1.DispatchServiceClient
	received chan string // each request id, as the server takes it
	release  chan struct{}
}

func (f *slowDispatch) CreateTask(ctx context.Context, in *dispatchv1.CreateTaskRequest, _ ...grpc.CallOption) (*dispatchv1.Task, error) {
	f.received <- in.GetRequestId()
	select {
	case <-f.release:
		return &dispatchv1.Task{Id: "task-" + in.GetRequestId(), RequestId: in.GetRequestId()}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// TestOrderCountsCreationsInFlightWhenOrderingEnds: a CreateTask in flight when the ordering period ends
// still creates its task on the server, so the run waits for its answer and counts it. Before, the call
// was cancelled with the period and the task went uncounted: TestDemoForABoundedTime found one more task
// than the customers had created (3 runs in 3 at load 17).
func TestOrderCountsCreationsInFlightWhenOrderingEnds(t *testing.T) {
	fake := &slowDispatch{received: make(chan string, maxCreatesInFlight), release: make(chan struct{})}
	r := &run{
		cfg:   Config{Area: Berlin, Rate: MaxRate, MaxOpen: 1000, Logger: slog.New(slog.DiscardHandler)},
		c:     &clients{dispatch: fake},
		stats: &Stats{},
		id:    "inflight",
		rng:   rand.New(rand.NewPCG(5, 6)),
	}
	cust := &account{access: "token", expires: time.Now().Add(time.Hour)}
	stop := make(chan struct{})
	ordered := make(chan func(), 1)
	go func() { ordered <- r.order(t.Context(), stop, []*account{cust}) }()
	<-fake.received // a creation is in flight
	close(stop)
	wait := <-ordered
	close(fake.release) // the server answers after the ordering period ended
	wait()
	if got, want := r.stats.TasksCreated.Load(), int64(1+len(fake.received)); got != want {
		t.Errorf("TasksCreated = %d, want %d, every task the server created", got, want)
	}
	if got := r.stats.Errors.Load(); got != 0 {
		t.Errorf("Errors = %d, want 0", got)
	}
}

// Two bots of one courier (a restarted demo's, delivering what an earlier run's bot picked up) never send
// a command under the same id: the server remembers a courier's command ids, and the later bot's
// commands were refused with COMMAND_ID_REUSED (the restart left those couriers BUSY). Each id keeps the
// contract's rule (printable ASCII, at most 64 characters).
func TestCommandIDsOfTwoBotsOfOneCourierDiffer(t *testing.T) {
	valid := regexp.MustCompile(`^[!-~]{1,64}$`)
	seen := map[string]bool{}
	for bot := range 2 {
		b := newCourierBot(&run{}, nil, nil, "courier-1", 0, Point{}, 1)
		for range 5 {
			id := b.nextCommandID()
			if seen[id] {
				t.Fatalf("bot %d's command id %q was used by an earlier bot of the courier (or by itself)", bot, id)
			}
			if !valid.MatchString(id) {
				t.Errorf("command id %q breaks the contract's rule ^[!-~]+$, at most 64 characters", id)
			}
			seen[id] = true
		}
	}
}
