package grpcapi_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
	"lastmile/internal/platform/auth"
)

// session is a courier app's StreamAssignments stream.
type session struct {
	t      *testing.T
	stream dispatchv1.DispatchService_StreamAssignmentsClient
}

func (e *env) open(t *testing.T, p auth.Principal, hello *dispatchv1.SessionHello) *session {
	t.Helper()
	stream, err := e.client.StreamAssignments(callCtx(t, p))
	if err != nil {
		t.Fatal(err)
	}
	s := &session{t: t, stream: stream}
	if hello != nil {
		s.send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Hello{Hello: hello}})
	}
	return s
}

// send sends m. io.EOF is not a failure: it means the server already ended the stream (it may refuse a
// session before reading its hello), and the status it ended with is what the next Recv (recv, end)
// returns, as grpc-go documents for SendMsg.
func (s *session) send(m *dispatchv1.StreamAssignmentsRequest) {
	s.t.Helper()
	if err := s.stream.Send(m); err != nil && !errors.Is(err, io.EOF) {
		s.t.Fatalf("send %v: %v", m, err)
	}
}

// recv returns the next message, checking that it carries the server's clock.
func (s *session) recv() *dispatchv1.StreamAssignmentsResponse {
	s.t.Helper()
	m, err := s.stream.Recv()
	if err != nil {
		s.t.Fatalf("recv: %v", err)
	}
	if m.GetServerTime() == nil {
		s.t.Errorf("message without server_time: %v", m)
	}
	return m
}

// end returns the status the stream ended with, skipping messages before it.
func (s *session) end() error {
	for {
		if _, err := s.stream.Recv(); err != nil {
			return err
		}
	}
}

func (s *session) command(id string, m *dispatchv1.StreamAssignmentsRequest) *dispatchv1.CommandResult {
	s.t.Helper()
	m.CommandId = id
	s.send(m)
	for {
		r := s.recv()
		if cr := r.GetCommandResult(); cr != nil {
			if cr.GetCommandId() != id {
				s.t.Fatalf("command_result for %q, want %q", cr.GetCommandId(), id)
			}
			return cr
		}
	}
}

func TestStreamAssignmentsRejectsBadOpenings(t *testing.T) {
	e := start(t, true)
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)

	s := e.open(t, courierP(c), nil)
	s.send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Ack{Ack: &dispatchv1.Acknowledge{Cursor: 1}}})
	wantCode(t, "first message ack", s.end(), codes.InvalidArgument)

	s = e.open(t, courierP(c), &dispatchv1.SessionHello{})
	if s.recv().GetStarted() == nil {
		t.Fatal("first message is not started")
	}
	s.send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Hello{Hello: &dispatchv1.SessionHello{}}})
	wantCode(t, "hello twice", s.end(), codes.InvalidArgument)

	s = e.open(t, courierP(c), &dispatchv1.SessionHello{})
	s.recv()
	s.send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Ack{Ack: &dispatchv1.Acknowledge{Cursor: 99}}})
	wantCode(t, "ack beyond the cursors sent", s.end(), codes.InvalidArgument)

	s = e.open(t, customer, &dispatchv1.SessionHello{})
	wantCode(t, "StreamAssignments as customer", s.end(), codes.PermissionDenied)
	noProfile := auth.Principal{Kind: auth.User, Subject: userID(77), Roles: []string{auth.RoleCourier}}
	s = e.open(t, noProfile, &dispatchv1.SessionHello{})
	wantCode(t, "StreamAssignments without a courier profile", s.end(), codes.FailedPrecondition)
}

func TestStreamAssignmentsDeliversAndExecutes(t *testing.T) {
	e := start(t, true)
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	s := e.open(t, courierP(c), &dispatchv1.SessionHello{AppVersion: "2.14.1"})
	st := s.recv().GetStarted()
	if st == nil || st.GetCourierId() != c.ID || st.GetCursorEpoch() == 0 || len(st.GetActiveTasks()) != 0 || st.GetSessionId() == "" {
		t.Fatalf("started = %v", st)
	}

	task := e.create(t, customer, "r1") // the engine offers it to the only connected courier
	m := s.recv()
	offer := m.GetOffer()
	if offer == nil || m.GetCursor() <= 0 || offer.GetTask().GetId() != task.GetId() || offer.GetOffer().GetResponseTimeout().AsDuration() != 20*time.Second ||
		offer.GetTask().GetDropoff().GetContact() != nil || offer.GetTask().GetDeliveryCode() != "" {
		t.Fatalf("offer = %v; want the task's offer, contacts withheld", m)
	}
	s.send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Ack{Ack: &dispatchv1.Acknowledge{Cursor: m.GetCursor()}}})

	accept := &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{Accept: &dispatchv1.AcceptOffer{OfferId: offer.GetOffer().GetId()}}}
	res := s.command("c1", accept)
	if res.GetError() != nil || res.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_ASSIGNED || res.GetTask().GetDropoff().GetContact().GetName() != "Ada" || res.GetReplayed() {
		t.Fatalf("accept = %v; want ASSIGNED with contacts", res)
	}
	res = s.command("c1", accept)
	if !res.GetReplayed() || res.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_ASSIGNED {
		t.Errorf("accept again under its id = %v; want the stored result, replayed", res)
	}
	res = s.command("c1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{PickedUp: &dispatchv1.ConfirmPickup{TaskId: task.GetId()}}})
	if e := res.GetError(); e.GetCode() != int32(codes.AlreadyExists) || e.GetReason() != "COMMAND_ID_REUSED" {
		t.Errorf("another command under a used id = %v; want ALREADY_EXISTS COMMAND_ID_REUSED", res)
	}
	res = s.command("c2", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{PickedUp: &dispatchv1.ConfirmPickup{TaskId: task.GetId()}}})
	if res.GetError() != nil || res.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_PICKED_UP {
		t.Fatalf("picked_up = %v", res)
	}
	deliver := func(code string) *dispatchv1.StreamAssignmentsRequest {
		return &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Delivered{Delivered: &dispatchv1.ConfirmDelivery{TaskId: task.GetId(),
			InlineProofs: []*dispatchv1.InlineProof{{Kind: dispatchv1.ProofKind_PROOF_KIND_CODE, Value: &dispatchv1.InlineProof_Code{Code: code}}}}}}
	}
	wrong := "0000"
	if task.GetDeliveryCode() == wrong {
		wrong = "1111"
	}
	res = s.command("c3", deliver(wrong))
	if e := res.GetError(); e.GetCode() != int32(codes.FailedPrecondition) || e.GetReason() != "CODE_MISMATCH" || e.GetMetadata()["attempts_left"] == "" {
		t.Errorf("delivered with a wrong code = %v; want FAILED_PRECONDITION CODE_MISMATCH", res)
	}
	res = s.command("c4", deliver(task.GetDeliveryCode()))
	if res.GetError() != nil || res.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_DELIVERED {
		t.Fatalf("delivered = %v", res)
	}
	res = s.command("c5", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{Accept: &dispatchv1.AcceptOffer{OfferId: taskID(99)}}})
	if res.GetError().GetCode() != int32(codes.NotFound) {
		t.Errorf("accept of an unknown offer = %v; want NOT_FOUND", res)
	}

	// The app half-closes: the stream ends with OK.
	if err := s.stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := s.end(); !errors.Is(err, io.EOF) {
		t.Errorf("stream after half-close = %v, want OK", err)
	}
}

func TestStreamAssignmentsReplacedAndDrained(t *testing.T) {
	e := start(t, true)
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	first := e.open(t, courierP(c), &dispatchv1.SessionHello{})
	first.recv()
	second := e.open(t, courierP(c), &dispatchv1.SessionHello{})
	second.recv()
	m := first.recv()
	if m.GetDrain().GetCode() != dispatchv1.DrainReason_DRAIN_REASON_SESSION_REPLACED || m.GetCursor() != 0 {
		t.Errorf("replaced session got %v, want drain SESSION_REPLACED", m)
	}
	wantCode(t, "replaced session", first.end(), codes.Aborted)

	e.svc.Drain(time.Millisecond)
	m = second.recv()
	if m.GetDrain().GetCode() != dispatchv1.DrainReason_DRAIN_REASON_SERVER_SHUTDOWN {
		t.Errorf("draining session got %v, want drain SERVER_SHUTDOWN", m)
	}
	wantCode(t, "drained session", second.end(), codes.Unavailable)
	third := e.open(t, courierP(c), &dispatchv1.SessionHello{})
	wantCode(t, "session opened while draining", third.end(), codes.Unavailable)
}

func TestWatchTask(t *testing.T) {
	e := start(t, true)
	task := e.create(t, customer, "r1")
	stream, err := e.client.WatchTask(callCtx(t, customer), &dispatchv1.WatchTaskRequest{Id: task.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetTask().GetId() != task.GetId() || first.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_PENDING {
		t.Fatalf("first WatchTask message = %v, %v; want the task", first, err)
	}
	if _, err := e.client.CancelTask(callCtx(t, customer), &dispatchv1.CancelTaskRequest{Id: task.GetId(), Reason: dispatchv1.CancelReason_CANCEL_REASON_OTHER}); err != nil {
		t.Fatal(err)
	}
	var last *dispatchv1.Task
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("WatchTask ended with %v, want OK after the final state", err)
		}
		if m.GetTask() != nil {
			last = m.GetTask()
		}
	}
	if last.GetState() != dispatchv1.TaskState_TASK_STATE_CANCELLED {
		t.Errorf("last task sent = %v, want CANCELLED", last)
	}

	stream, err = e.client.WatchTask(callCtx(t, other), &dispatchv1.WatchTaskRequest{Id: task.GetId()})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "WatchTask(another customer's)", err, codes.NotFound)
}

func TestWatchTasks(t *testing.T) {
	e := start(t, true)
	t1 := e.create(t, customer, "r1")
	_ = e.create(t, other, "r2")
	stream, err := e.client.WatchTasks(callCtx(t, customer), &dispatchv1.WatchTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil || m.GetTask().GetId() != t1.GetId() {
		t.Fatalf("WatchTasks first = %v, %v; want the customer's task", m, err)
	}
	m, err = stream.Recv()
	if err != nil || m.GetSnapshotComplete().GetTaskCount() != 1 || m.GetSnapshotComplete().GetTruncated() {
		t.Fatalf("WatchTasks second = %v, %v; want snapshot_complete of 1", m, err)
	}
	t3 := e.create(t, customer, "r3")
	// Live changes follow, the engine's work on t1 among them, until the new task.
	for {
		m, err = stream.Recv()
		if err != nil {
			t.Fatalf("WatchTasks live: %v", err)
		}
		if m.GetTask().GetId() == t3.GetId() {
			break
		}
		if id := m.GetTask().GetId(); id != t1.GetId() {
			t.Fatalf("WatchTasks live = %v; want changes of the customer's tasks only", m)
		}
	}

	stream, err = e.client.WatchTasks(callCtx(t, customer), &dispatchv1.WatchTasksRequest{CustomerId: userID(2)})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "WatchTasks(another customer's)", err, codes.PermissionDenied)
}

// TestShutdownEndsWatches: the server's Shutdown ends open watches with Unavailable, so that a graceful
// stop need not wait for them.
func TestShutdownEndsWatches(t *testing.T) {
	e := start(t, true)
	task := e.create(t, customer, "r1")
	one, err := e.client.WatchTask(callCtx(t, customer), &dispatchv1.WatchTaskRequest{Id: task.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := one.Recv(); err != nil {
		t.Fatal(err)
	}
	all, err := e.client.WatchTasks(callCtx(t, dispatcher), &dispatchv1.WatchTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := all.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetSnapshotComplete() != nil {
			break
		}
	}
	e.api.Shutdown()
	for name, recv := range map[string]func() error{
		"WatchTask":  func() error { _, err := one.Recv(); return err },
		"WatchTasks": func() error { _, err := all.Recv(); return err },
	} {
		var err error
		for err == nil {
			err = recv()
		}
		wantCode(t, name+" after Shutdown", err, codes.Unavailable)
	}
}

// nextOffer returns the next offer delivered, acknowledging it.
func (s *session) nextOffer() *dispatchv1.OfferNotice {
	s.t.Helper()
	for {
		m := s.recv()
		if o := m.GetOffer(); o != nil {
			s.send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Ack{Ack: &dispatchv1.Acknowledge{Cursor: m.GetCursor()}}})
			return o
		}
	}
}

// TestStreamAssignmentsDeclineReleaseFail: the other commands, with their reasons, comments, locations and
// event times decoded.
func TestStreamAssignmentsDeclineReleaseFail(t *testing.T) {
	e := start(t, true)
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	s := e.open(t, courierP(c), &dispatchv1.SessionHello{})
	s.recv()
	here := point(dispatchtest.Berlin)
	occur := timestamppb.New(e.sys.Clock.Now().Add(-time.Minute))

	t1 := e.create(t, customer, "r1")
	o := s.nextOffer()
	res := s.command("d1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Decline{Decline: &dispatchv1.DeclineOffer{
		OfferId: o.GetOffer().GetId(), Reason: dispatchv1.DeclineReason_DECLINE_REASON_TOO_FAR, Comment: "across the river"}}})
	if res.GetError() != nil || res.GetTask() != nil {
		t.Fatalf("decline = %v; want success without a task", res)
	}
	ex, err := e.client.ExplainAssignment(callCtx(t, dispatcher), &dispatchv1.ExplainAssignmentRequest{Id: t1.GetId()})
	if err != nil || len(ex.GetDecisions()) == 0 || ex.GetDecisions()[len(ex.GetDecisions())-1].GetCandidates()[0].GetDeclineReason() != dispatchv1.DeclineReason_DECLINE_REASON_TOO_FAR {
		t.Errorf("explanation after the decline = %v, %v; want the decline's reason", ex, err)
	}

	t2 := e.create(t, customer, "r2")
	o = s.nextOffer()
	if o.GetTask().GetId() != t2.GetId() {
		t.Fatalf("offer of %s, want %s (the declined task is never offered again)", o.GetTask().GetId(), t2.GetId())
	}
	s.command("a2", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{Accept: &dispatchv1.AcceptOffer{OfferId: o.GetOffer().GetId()}}})
	res = s.command("r2", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Release{Release: &dispatchv1.ReleaseTask{
		TaskId: t2.GetId(), Reason: dispatchv1.ReleaseReason_RELEASE_REASON_VEHICLE_PROBLEM, Comment: "flat tyre", OccurTime: occur}}})
	if res.GetError() != nil || res.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_PENDING || res.GetTask().GetDropoff().GetContact() != nil {
		t.Fatalf("release = %v; want PENDING, contacts withheld", res)
	}
	if h := res.GetTask().GetHistory(); h[len(h)-1].GetComment() != "handed back: vehicle_problem: flat tyre" {
		t.Errorf("release history = %v, want the comment", h)
	}
	res = s.command("r3", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Release{Release: &dispatchv1.ReleaseTask{
		TaskId: t2.GetId(), Reason: dispatchv1.ReleaseReason_RELEASE_REASON_OTHER}}})
	if res.GetError().GetCode() != int32(codes.FailedPrecondition) || res.GetError().GetReason() != "NOT_HOLDER" {
		t.Errorf("release of a released task = %v; want FAILED_PRECONDITION NOT_HOLDER", res)
	}

	// The hand-back frees the courier in the courier service by a job that runs after the command's
	// answer; t3 is created once it has, or its first search would find the courier still busy and defer
	// it on a clock that does not move.
	waitUntil(t, "the courier service released t2", func() bool { _, held := e.sys.Couriers.Claims()[t2.GetId()]; return !held })
	t3 := e.create(t, customer, "r3")
	o = s.nextOffer()
	if o.GetTask().GetId() != t3.GetId() {
		t.Fatalf("offer of %s, want %s", o.GetTask().GetId(), t3.GetId())
	}
	s.command("a3", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{Accept: &dispatchv1.AcceptOffer{OfferId: o.GetOffer().GetId()}}})
	res = s.command("f3", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Failed{Failed: &dispatchv1.ReportFailure{
		TaskId: t3.GetId(), Reason: dispatchv1.FailureReason_FAILURE_REASON_UNSAFE, Comment: "dog", Location: here, OccurTime: occur}}})
	if h := res.GetTask().GetHistory(); res.GetError() != nil || res.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_FAILED ||
		res.GetTask().GetFailureReason() != dispatchv1.FailureReason_FAILURE_REASON_UNSAFE || h[len(h)-1].GetComment() != "dog" {
		t.Errorf("failed = %v; want FAILED (unsafe), with the comment", res)
	}
}

// TestWatchTasksChangedSince: with changed_since the snapshot also holds the tasks finished since then,
// after the open ones; more than 24 hours away is INVALID_ARGUMENT.
func TestWatchTasksChangedSince(t *testing.T) {
	e := start(t, false)
	open := e.create(t, customer, "r1")
	done := e.create(t, customer, "r2")
	since := e.sys.Clock.Now()
	if _, err := e.client.CancelTask(callCtx(t, customer), &dispatchv1.CancelTaskRequest{Id: done.GetId(), Reason: dispatchv1.CancelReason_CANCEL_REASON_CUSTOMER_REQUEST}); err != nil {
		t.Fatalf("CancelTask: %v", err)
	}
	stream, err := e.client.WatchTasks(callCtx(t, customer), &dispatchv1.WatchTasksRequest{ChangedSince: timestamppb.New(since)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("WatchTasks(changed_since): %v", err)
		}
		if c := m.GetSnapshotComplete(); c != nil {
			got = append(got, fmt.Sprintf("complete %d %v", c.GetTaskCount(), c.GetTruncated()))
		} else {
			got = append(got, m.GetTask().GetId()+" "+m.GetTask().GetState().String())
		}
	}
	want := []string{open.GetId() + " TASK_STATE_PENDING", done.GetId() + " TASK_STATE_CANCELLED", "complete 2 false"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}

	stream, err = e.client.WatchTasks(callCtx(t, customer), &dispatchv1.WatchTasksRequest{ChangedSince: timestamppb.New(since.Add(-25 * time.Hour))})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "WatchTasks(changed_since 25 h ago)", err, codes.InvalidArgument)
}

// waitUntil polls cond until it holds, failing the test after testTimeout (a hang guard, not a timing
// assertion).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// offeredOnStream starts a server with its jobs running, opens the session of a new courier at Berlin and
// creates a task, which is offered to them: it returns the server, the session (its snapshot read), the
// task and the offer.
func offeredOnStream(t *testing.T) (*env, *session, *dispatchv1.Task, *dispatchv1.OfferNotice) {
	t.Helper()
	e := start(t, true)
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	s := e.open(t, courierP(c), &dispatchv1.SessionHello{})
	s.recv()
	task := e.create(t, customer, "r1")
	return e, s, task, s.nextOffer()
}

// TestStreamAssignmentsTakesAnyEventTime: a command queued offline for days, or sent by a device whose
// clock is a day ahead or reset to 1970, is carried out with its event time moved into place (not before
// the task's previous step, not after the command arrived), and the session stays open: a refused message
// would end it, and the app resending the command at every reconnect would never get through.
func TestStreamAssignmentsTakesAnyEventTime(t *testing.T) {
	e, s, task, o := offeredOnStream(t)
	res := s.command("a1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{Accept: &dispatchv1.AcceptOffer{OfferId: o.GetOffer().GetId()}}})
	if res.GetError() != nil {
		t.Fatalf("accept = %v", res)
	}
	last := func(r *dispatchv1.CommandResult) *dispatchv1.TaskStateChange {
		h := r.GetTask().GetHistory()
		return h[len(h)-1]
	}
	assigned := last(res).GetChangeTime().AsTime()

	now := e.sys.Clock.Now()
	res = s.command("p1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{PickedUp: &dispatchv1.ConfirmPickup{
		TaskId: task.GetId(), OccurTime: timestamppb.New(now.Add(-72 * time.Hour))}}})
	if res.GetError() != nil || res.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_PICKED_UP || !last(res).GetChangeTime().AsTime().Equal(assigned) {
		t.Fatalf("picked_up 3 days ago = %v; want PICKED_UP at the assignment's time %v", res, assigned)
	}
	pickedUp := last(res).GetChangeTime().AsTime()
	res = s.command("d1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Delivered{Delivered: &dispatchv1.ConfirmDelivery{
		TaskId: task.GetId(), OccurTime: timestamppb.New(time.Unix(0, 0)),
		InlineProofs: []*dispatchv1.InlineProof{{Kind: dispatchv1.ProofKind_PROOF_KIND_CODE, Value: &dispatchv1.InlineProof_Code{Code: task.GetDeliveryCode()},
			CaptureTime: timestamppb.New(time.Unix(0, 0))}}}}})
	if res.GetError() != nil || res.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_DELIVERED || !last(res).GetChangeTime().AsTime().Equal(pickedUp) {
		t.Fatalf("delivered in 1970 = %v; want DELIVERED at the pickup's time %v", res, pickedUp)
	}
	// The code's capture time, from the same wrong clock, is not kept.
	if ps := res.GetTask().GetProofs(); len(ps) != 1 || ps[0].GetKind() != dispatchv1.ProofKind_PROOF_KIND_CODE || ps[0].GetCaptureTime() != nil {
		t.Errorf("proofs of the delivery = %v; want the code without a capture time", ps)
	}

	second := e.create(t, customer, "r2")
	o = s.nextOffer()
	if o.GetTask().GetId() != second.GetId() {
		t.Fatalf("offer of %s, want %s", o.GetTask().GetId(), second.GetId())
	}
	s.command("a2", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{Accept: &dispatchv1.AcceptOffer{OfferId: o.GetOffer().GetId()}}})
	arrived := e.sys.Clock.Now()
	res = s.command("r2", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Release{Release: &dispatchv1.ReleaseTask{
		TaskId: second.GetId(), Reason: dispatchv1.ReleaseReason_RELEASE_REASON_OTHER, OccurTime: timestamppb.New(arrived.Add(26 * time.Hour))}}})
	if res.GetError() != nil || res.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_PENDING || !last(res).GetChangeTime().AsTime().Equal(arrived) {
		t.Fatalf("release a day ahead = %v; want PENDING at the time it arrived %v", res, arrived)
	}
}

// invalidCommand is the result of command id when its command breaks its rules: INVALID_ARGUMENT, reason
// INVALID_COMMAND, and message, the sentences a unary call's status would carry.
func invalidCommand(id, message string) *dispatchv1.CommandResult {
	return &dispatchv1.CommandResult{CommandId: id, Error: &dispatchv1.CommandError{Code: int32(codes.InvalidArgument), Message: message, Reason: "INVALID_COMMAND"}}
}

// TestStreamAssignmentsAnswersInvalidCommands: a command that breaks its rules (a reason value a newer app
// knows and this server does not, a comment too long, too many inline proofs, a timestamp that is no
// time) gets a command_result with INVALID_ARGUMENT, reason INVALID_COMMAND, and is not executed nor
// stored, and the session stays open: ending it would make the app, which resends the command under the
// same command_id at every reconnect, lose every session it opens.
func TestStreamAssignmentsAnswersInvalidCommands(t *testing.T) {
	_, s, task, o := offeredOnStream(t)
	offerID := o.GetOffer().GetId()
	decline := func(reason dispatchv1.DeclineReason, comment string) *dispatchv1.StreamAssignmentsRequest {
		return &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Decline{Decline: &dispatchv1.DeclineOffer{
			OfferId: offerID, Reason: reason, Comment: comment}}}
	}
	check := func(what string, got, want *dispatchv1.CommandResult) {
		t.Helper()
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s: command_result (-want +got):\n%s", what, diff)
		}
	}

	unknownReason := invalidCommand("d1", "decline.reason must be one of DECLINE_REASON_TOO_FAR, DECLINE_REASON_TOO_BUSY, "+
		"DECLINE_REASON_PARCEL_TOO_LARGE, DECLINE_REASON_SHIFT_ENDING, DECLINE_REASON_UNSAFE_AREA, DECLINE_REASON_OTHER")
	check("decline with an unknown reason", s.command("d1", decline(99, "")), unknownReason)
	// Not stored: sent again under its id, it gets the same answer, not a replayed one.
	check("the same decline again", s.command("d1", decline(99, "")), unknownReason)
	check("decline with a 501-character comment", s.command("d2", decline(dispatchv1.DeclineReason_DECLINE_REASON_TOO_FAR, strings.Repeat("x", 501))),
		invalidCommand("d2", "decline.comment must be at most 500 characters"))

	// Neither decline was executed: the offer is still open, and accepting it works.
	res := s.command("a1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{Accept: &dispatchv1.AcceptOffer{OfferId: offerID}}})
	if res.GetError() != nil || res.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_ASSIGNED {
		t.Fatalf("accept after the invalid declines = %v; want ASSIGNED", res)
	}

	code := &dispatchv1.InlineProof{Kind: dispatchv1.ProofKind_PROOF_KIND_BARCODE, Value: &dispatchv1.InlineProof_Barcode{Barcode: "PARCEL-1"}}
	check("picked_up with five inline proofs", s.command("p1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{PickedUp: &dispatchv1.ConfirmPickup{
		TaskId: task.GetId(), InlineProofs: []*dispatchv1.InlineProof{code, code, code, code, code}}}}),
		invalidCommand("p1", "picked_up.inline_proofs must contain at most 4 items"))
	// A timestamp past the year 9999 breaks no rule of the contract's, but is no time either (decoding
	// refuses it): the same answer.
	check("picked_up at no time", s.command("p2", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{PickedUp: &dispatchv1.ConfirmPickup{
		TaskId: task.GetId(), OccurTime: &timestamppb.Timestamp{Seconds: 1 << 40}}}}),
		invalidCommand("p2", "picked_up.occur_time is not a valid timestamp"))

	res = s.command("p3", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{PickedUp: &dispatchv1.ConfirmPickup{TaskId: task.GetId()}}})
	if res.GetError() != nil || res.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_PICKED_UP {
		t.Fatalf("picked_up after the invalid ones = %v; want PICKED_UP", res)
	}
}

// TestStreamAssignmentsInvalidCommandUnderAUsedID: an invalid command is not executed, but its command_id
// is looked up as every command's is: under an id an earlier command was executed with, it gets that
// command's stored result when it is the same command as far as it decodes (a pickup whose occur_time is
// no time decodes as one without), and COMMAND_ID_REUSED when it is another; never INVALID_COMMAND.
func TestStreamAssignmentsInvalidCommandUnderAUsedID(t *testing.T) {
	_, s, task, o := offeredOnStream(t)
	reused := func(id string) *dispatchv1.CommandResult {
		return &dispatchv1.CommandResult{CommandId: id, Error: &dispatchv1.CommandError{Code: int32(codes.AlreadyExists),
			Message: "command_id " + id + " was already used for another command", Reason: "COMMAND_ID_REUSED"}}
	}
	check := func(what string, got, want *dispatchv1.CommandResult) {
		t.Helper()
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s: command_result (-want +got):\n%s", what, diff)
		}
	}
	accept := s.command("a1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{Accept: &dispatchv1.AcceptOffer{OfferId: o.GetOffer().GetId()}}})
	if accept.GetError() != nil || accept.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_ASSIGNED {
		t.Fatalf("accept = %v; want ASSIGNED", accept)
	}
	check("decline with an unknown reason under the accept's id",
		s.command("a1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Decline{Decline: &dispatchv1.DeclineOffer{
			OfferId: o.GetOffer().GetId(), Reason: 99}}}), reused("a1"))

	pickup := s.command("p1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{PickedUp: &dispatchv1.ConfirmPickup{TaskId: task.GetId()}}})
	if pickup.GetError() != nil || pickup.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_PICKED_UP {
		t.Fatalf("picked_up = %v; want PICKED_UP", pickup)
	}
	replayed := proto.CloneOf(pickup)
	replayed.Replayed = true
	check("the pickup again, with an occur_time that is no time",
		s.command("p1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{PickedUp: &dispatchv1.ConfirmPickup{
			TaskId: task.GetId(), OccurTime: &timestamppb.Timestamp{Seconds: 1 << 40}}}}), replayed)
	code := &dispatchv1.InlineProof{Kind: dispatchv1.ProofKind_PROOF_KIND_BARCODE, Value: &dispatchv1.InlineProof_Barcode{Barcode: "PARCEL-1"}}
	check("a pickup with five inline proofs under the pickup's id",
		s.command("p1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{PickedUp: &dispatchv1.ConfirmPickup{
			TaskId: task.GetId(), InlineProofs: []*dispatchv1.InlineProof{code, code, code, code, code}}}}), reused("p1"))
}

// TestStreamAssignmentsAnswersUnknownCommands: a message with a command_id and no command this server
// knows (a newer app's command, which reaches the server as an unknown field, or none at all) gets a
// command_result with INVALID_ARGUMENT, reason INVALID_COMMAND, naming the commands this server knows, and
// the session stays open; under a command_id already used it gets COMMAND_ID_REUSED.
func TestStreamAssignmentsAnswersUnknownCommands(t *testing.T) {
	_, s, _, o := offeredOnStream(t)
	unknown := func(id string) *dispatchv1.CommandResult {
		return invalidCommand(id, "kind must be a command this server knows: accept, decline, picked_up, delivered, failed or release")
	}
	check := func(what string, got, want *dispatchv1.CommandResult) {
		t.Helper()
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s: command_result (-want +got):\n%s", what, diff)
		}
	}
	// Field 20 stands for a command this server's contract does not have yet: {"task_id": ...}.
	newer := &dispatchv1.StreamAssignmentsRequest{}
	newer.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 20, protowire.BytesType),
		protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), taskID(1))))
	check("a newer app's command", s.command("n1", newer), unknown("n1"))
	check("the same command again", s.command("n1", proto.CloneOf(newer)), unknown("n1"))
	check("a message with a command_id and nothing else", s.command("n2", &dispatchv1.StreamAssignmentsRequest{}), unknown("n2"))

	// The session is open: the offer is accepted; a newer command under the accept's id is another command.
	res := s.command("a1", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{Accept: &dispatchv1.AcceptOffer{OfferId: o.GetOffer().GetId()}}})
	if res.GetError() != nil || res.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_ASSIGNED {
		t.Fatalf("accept after the unknown commands = %v; want ASSIGNED", res)
	}
	check("a newer app's command under the accept's id", s.command("a1", proto.CloneOf(newer)),
		&dispatchv1.CommandResult{CommandId: "a1", Error: &dispatchv1.CommandError{Code: int32(codes.AlreadyExists),
			Message: "command_id a1 was already used for another command", Reason: "COMMAND_ID_REUSED"}})
}

// TestStreamAssignmentsEndsOnInvalidMessagesThatAreNoCommand: what cannot be answered with a
// command_result still ends the stream with INVALID_ARGUMENT: a bad ack, a second hello, a command without
// a command_id or with an invalid one (also when its command is invalid too or unknown), a message of no
// kind and no command_id.
func TestStreamAssignmentsEndsOnInvalidMessagesThatAreNoCommand(t *testing.T) {
	e := start(t, true)
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	badDecline := &dispatchv1.DeclineOffer{OfferId: taskID(1), Reason: 99}
	for _, tc := range []struct {
		name string
		msg  *dispatchv1.StreamAssignmentsRequest
	}{
		{"ack of cursor 0", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Ack{Ack: &dispatchv1.Acknowledge{}}}},
		{"ack with a command_id", &dispatchv1.StreamAssignmentsRequest{CommandId: "a1", Kind: &dispatchv1.StreamAssignmentsRequest_Ack{Ack: &dispatchv1.Acknowledge{Cursor: 1}}}},
		{"hello again", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Hello{Hello: &dispatchv1.SessionHello{}}}},
		{"invalid hello again", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Hello{Hello: &dispatchv1.SessionHello{ResumeCursor: -1}}}},
		{"invalid command without command_id", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Decline{Decline: badDecline}}},
		{"invalid command with a 65-character command_id", &dispatchv1.StreamAssignmentsRequest{CommandId: strings.Repeat("c", 65), Kind: &dispatchv1.StreamAssignmentsRequest_Decline{Decline: badDecline}}},
		{"no kind and no command_id", &dispatchv1.StreamAssignmentsRequest{}},
		{"no kind and a 65-character command_id", &dispatchv1.StreamAssignmentsRequest{CommandId: strings.Repeat("c", 65)}},
	} {
		s := e.open(t, courierP(c), &dispatchv1.SessionHello{})
		if s.recv().GetStarted() == nil {
			t.Fatalf("%s: first message is not started", tc.name)
		}
		s.send(tc.msg)
		wantCode(t, tc.name, s.end(), codes.InvalidArgument)
	}
}

// TestStreamAssignmentsInvalidCommandsSpendTheBudget: an invalid command takes a token from the courier's
// message budget like any other: past the burst the stream ends with RESOURCE_EXHAUSTED instead of
// answering it.
func TestStreamAssignmentsInvalidCommandsSpendTheBudget(t *testing.T) {
	e := start(t, true)
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	s := e.open(t, courierP(c), &dispatchv1.SessionHello{})
	s.recv()
	bad := &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Decline{Decline: &dispatchv1.DeclineOffer{OfferId: taskID(1), Reason: 99}}}
	for i := range dispatch.DefaultSessionBurst {
		if res := s.command(fmt.Sprintf("d%d", i), bad); res.GetError().GetReason() != "INVALID_COMMAND" {
			t.Fatalf("invalid command %d of the burst = %v; want INVALID_COMMAND", i+1, res)
		}
	}
	bad.CommandId = "over"
	s.send(bad)
	wantCode(t, "invalid command over the budget", s.end(), codes.ResourceExhausted)
}
