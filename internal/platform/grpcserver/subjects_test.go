package grpcserver_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
)

// TestRevocationEndsUserStreams: with Config.Subjects, a change that revokes a user's token ends that
// user's open streams with Unauthenticated at once, and no one else's.
func TestRevocationEndsUserStreams(t *testing.T) {
	subjects := auth.NewSubjects(func(context.Context, string) (auth.SubjectState, error) {
		return auth.SubjectState{Active: true, Roles: []string{"ROLE_COURIER"}}, nil
	}, auth.SubjectsOptions{})
	started := make(chan string, 2)
	svc := &testService{onCall: func(ctx context.Context) {
		started <- auth.FromContext(ctx).Subject
		<-ctx.Done() // a stream that waits for events, as UserActivity and WatchCouriers do
	}}
	cfg := grpcserver.Config{
		Policy:        policyFor(&testgrpc.TestService_ServiceDesc, auth.Users("ROLE_COURIER"), nil),
		Authenticator: headerAuthenticator{},
		Subjects:      subjects,
	}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	client := testgrpc.NewTestServiceClient(conn)

	open := func(user string) testgrpc.TestService_StreamingOutputCallClient {
		t.Helper()
		stream, err := client.StreamingOutputCall(callCtx(t, "x-test-user", user, "x-test-roles", "ROLE_COURIER"), &testgrpc.StreamingOutputCallRequest{})
		if err != nil {
			t.Fatalf("StreamingOutputCall(%s) = %v", user, err)
		}
		return stream
	}
	revoked, kept := open("u1"), open("u2")
	for range 2 {
		select {
		case <-started:
		case <-time.After(testTimeout):
			t.Fatal("the streams did not reach the handler")
		}
	}

	subjects.Update("u1", auth.SubjectState{Roles: []string{"ROLE_COURIER"}}) // suspended
	_, err := revoked.Recv()
	if got := status.Code(err); got != codes.Unauthenticated {
		t.Fatalf("revoked stream Recv() = %v (code %v), want %v", err, got, codes.Unauthenticated)
	}

	done := make(chan error, 1)
	go func() {
		_, err := kept.Recv()
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the other user's stream ended too: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	subjects.Update("u2", auth.SubjectState{Active: true, Roles: []string{"ROLE_CUSTOMER"}}) // demoted
	if got := status.Code(<-done); got != codes.Unauthenticated {
		t.Errorf("demoted user's stream code = %v, want %v", got, codes.Unauthenticated)
	}
}
