package cli

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// fakeWatchClient hands out the WatchSubjects streams a test feeds; its other methods are not used.
type fakeWatchClient struct {
	identityv1.AuthServiceClient
	streams chan *fakeWatchStream
}

func (c *fakeWatchClient) WatchSubjects(ctx context.Context, _ *identityv1.WatchSubjectsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[identityv1.WatchSubjectsResponse], error) {
	select {
	case s := <-c.streams:
		s.ctx = ctx
		return s, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// fakeWatchStream delivers msgs; closing msgs breaks the stream with Unavailable.
type fakeWatchStream struct {
	grpc.ServerStreamingClient[identityv1.WatchSubjectsResponse]
	ctx  context.Context
	msgs chan *identityv1.WatchSubjectsResponse
}

func (s *fakeWatchStream) Recv() (*identityv1.WatchSubjectsResponse, error) {
	select {
	case m, ok := <-s.msgs:
		if !ok {
			return nil, status.Error(codes.Unavailable, "connection lost")
		}
		return m, nil
	case <-s.ctx.Done():
		return nil, status.FromContextError(s.ctx.Err()).Err()
	}
}

// mapLoader is a subject loader over a map the test changes.
type mapLoader struct {
	mu     sync.Mutex
	states map[string]auth.SubjectState
}

func (l *mapLoader) load(_ context.Context, id string) (auth.SubjectState, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.states[id], nil
}

func (l *mapLoader) set(id string, st auth.SubjectState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states[id] = st
}

// waitEnded waits for a tracked call to end and checks its cause's code.
func waitEnded(t *testing.T, what string, tracked context.Context, want apperr.Code) {
	t.Helper()
	select {
	case <-tracked.Done():
		if got := apperr.CodeOf(auth.RevokedCause(tracked)); got != want {
			t.Errorf("%s: cause %v (code %q), want code %q", what, context.Cause(tracked), got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the tracked call did not end", what)
	}
}

// TestSubjectWatch follows a remote subject cache through its watch: the changes a stream carries reach
// the cache; a reset inside a stream ends every tracked call; a reconnected stream drops the cache and
// ends the tracked calls that a change missed meanwhile revoked, and only those.
func TestSubjectWatch(t *testing.T) {
	courier := auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}}
	loader := &mapLoader{states: map[string]auth.SubjectState{"u1": courier, "u2": courier, "u3": courier}}
	subjects := auth.NewSubjects(loader.load, auth.SubjectsOptions{})
	client := &fakeWatchClient{streams: make(chan *fakeWatchStream)}
	w := &subjectWatch{client: client, subjects: subjects, logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("run() = %v, want nil", err)
		}
	}()

	issued := time.Now().Add(-time.Minute).Truncate(time.Second)
	principal := func(id string) auth.Principal {
		return auth.Principal{Kind: auth.User, Subject: id, Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	}
	track := func(id string) context.Context {
		t.Helper()
		if err := subjects.Check(ctx, principal(id)); err != nil {
			t.Fatalf("Check(%s) = %v, want nil", id, err)
		}
		tracked, stop := subjects.Track(ctx, principal(id))
		t.Cleanup(stop)
		return tracked
	}

	first := &fakeWatchStream{msgs: make(chan *identityv1.WatchSubjectsResponse, 4)}
	client.streams <- first
	first.msgs <- &identityv1.WatchSubjectsResponse{Reset_: true}
	u1 := track("u1")
	// u2 logs out: only the stream says so (the loader still has the old state).
	first.msgs <- &identityv1.WatchSubjectsResponse{Subjects: []*identityv1.Subject{{
		UserId: "u2", Active: true, Roles: []identityv1.Role{identityv1.Role_ROLE_COURIER}, RevokedBefore: timestamppb.New(issued),
	}}}
	deadline := time.Now().Add(10 * time.Second)
	for apperr.CodeOf(subjects.Check(ctx, principal("u2"))) != apperr.Unauthenticated {
		if time.Now().After(deadline) {
			t.Fatal("the logout the stream carried did not reach the cache")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// identity lost events: every tracked call ends, to be checked afresh.
	first.msgs <- &identityv1.WatchSubjectsResponse{Reset_: true}
	waitEnded(t, "u1's call after a reset inside the stream", u1, apperr.Unavailable)

	u1 = track("u1")
	u3 := track("u3")
	// The stream breaks, and u1 is suspended meanwhile: nothing tells the cache until it reconnects.
	loader.set("u1", auth.SubjectState{Roles: []string{auth.RoleCourier}})
	close(first.msgs)
	second := &fakeWatchStream{msgs: make(chan *identityv1.WatchSubjectsResponse, 4)}
	client.streams <- second
	second.msgs <- &identityv1.WatchSubjectsResponse{Reset_: true}
	waitEnded(t, "u1's call, suspended while the watch was down, after the reconnect", u1, apperr.Unauthenticated)
	if u3.Err() != nil {
		t.Errorf("u3's call ended by the reconnect: %v", context.Cause(u3))
	}
}
