package grpcapi_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
	"lastmile/internal/platform/auth"
)

var anonymous = auth.Principal{}

// shareLink creates a link to task as p with ttl (nil for the default) and fails the test otherwise.
func (e *env) shareLink(t *testing.T, p auth.Principal, taskID string, ttl *durationpb.Duration) *dispatchv1.TaskShareLink {
	t.Helper()
	l, err := e.client.CreateTaskShareLink(callCtx(t, p), &dispatchv1.CreateTaskShareLinkRequest{TaskId: taskID, Ttl: ttl})
	if err != nil {
		t.Fatalf("CreateTaskShareLink(%s): %v", taskID, err)
	}
	return l
}

func TestCreateTaskShareLink(t *testing.T) {
	e := start(t, false)
	task := e.create(t, customer, "r1")
	now := e.sys.Clock.Now()
	for name, p := range map[string]auth.Principal{"the customer": customer, "a dispatcher": dispatcher, "an admin": admin} {
		l := e.shareLink(t, p, task.GetId(), nil)
		wantExpire := now.Add(24 * time.Hour).UTC().Truncate(time.Second)
		if l.GetTaskId() != task.GetId() || len(l.GetToken()) != 82 || !l.GetExpireTime().AsTime().Equal(wantExpire) ||
			l.GetPath() != "/track/"+task.GetId()+"#shareToken="+l.GetToken() {
			t.Errorf("CreateTaskShareLink as %s = %v, want task %s, an 82-character token, expiry %v and the tracking path", name, l, task.GetId(), wantExpire)
		}
	}
	l := e.shareLink(t, customer, task.GetId(), durationpb.New(90*time.Second))
	if want := now.Add(90 * time.Second).UTC().Truncate(time.Second); !l.GetExpireTime().AsTime().Equal(want) {
		t.Errorf("CreateTaskShareLink(ttl 90s) expiry = %v, want %v", l.GetExpireTime().AsTime(), want)
	}

	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	cases := []struct {
		name string
		p    auth.Principal
		req  *dispatchv1.CreateTaskShareLinkRequest
		want codes.Code
	}{
		{"another customer", other, &dispatchv1.CreateTaskShareLinkRequest{TaskId: task.GetId()}, codes.NotFound},
		{"a courier", courierP(c), &dispatchv1.CreateTaskShareLinkRequest{TaskId: task.GetId()}, codes.PermissionDenied},
		{"the simulator", simulator, &dispatchv1.CreateTaskShareLinkRequest{TaskId: task.GetId()}, codes.PermissionDenied},
		{"an anonymous caller", anonymous, &dispatchv1.CreateTaskShareLinkRequest{TaskId: task.GetId()}, codes.Unauthenticated},
		{"a missing task", dispatcher, &dispatchv1.CreateTaskShareLinkRequest{TaskId: taskID(404)}, codes.NotFound},
		{"a malformed id", dispatcher, &dispatchv1.CreateTaskShareLinkRequest{TaskId: "t1"}, codes.InvalidArgument},
		{"ttl 59s", customer, &dispatchv1.CreateTaskShareLinkRequest{TaskId: task.GetId(), Ttl: durationpb.New(59 * time.Second)}, codes.InvalidArgument},
		{"ttl 7 days and a second", customer, &dispatchv1.CreateTaskShareLinkRequest{TaskId: task.GetId(), Ttl: durationpb.New(7*24*time.Hour + time.Second)}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		_, err := e.client.CreateTaskShareLink(callCtx(t, tc.p), tc.req)
		wantCode(t, "CreateTaskShareLink as "+tc.name, err, tc.want)
	}
}

// checkShareView fails the test unless got is task in the share view: no customer, courier, request id,
// notes, delivery code, contact, instructions, offer or proofs, and a history without who did what.
func checkShareView(t *testing.T, call string, got, task *dispatchv1.Task) {
	t.Helper()
	if got.GetId() != task.GetId() || got.GetState() != task.GetState() || got.GetEtag() != task.GetEtag() ||
		got.GetPickup().GetAddress() != "Alexanderplatz 1" || got.GetDropoff().GetAddress() != "Torstrasse 2" ||
		got.GetDropoff().GetLocation().GetLatitude() != task.GetDropoff().GetLocation().GetLatitude() ||
		len(got.GetHistory()) != len(task.GetHistory()) || len(got.GetProofRequirements()) != 1 {
		t.Errorf("%s = %v, want task %s's state, etag, stops, history and proof requirements", call, got, task.GetId())
	}
	if got.GetCustomerId() != "" || got.GetCourierId() != "" || got.GetRequestId() != "" || got.GetNotes() != "" ||
		got.GetDeliveryCode() != "" || got.GetParcelBarcode() != "" || got.GetDropoff().GetContact() != nil ||
		got.GetDropoff().GetInstructions() != "" || got.GetCurrentOffer() != nil || len(got.GetProofs()) != 0 {
		t.Errorf("%s = %v, want no customer, courier, request id, notes, code, barcode, contact, instructions, offer or proofs", call, got)
	}
	for i, h := range got.GetHistory() {
		if h.GetState() != task.GetHistory()[i].GetState() || h.GetActor() != task.GetHistory()[i].GetActor() ||
			h.GetCourierId() != "" || h.GetActorUserId() != "" || h.GetOfferId() != "" || h.GetComment() != "" {
			t.Errorf("%s history[%d] = %v, want state and actor only", call, i, h)
		}
	}
}

func TestGetTaskWithShareToken(t *testing.T) {
	e := start(t, false)
	task := e.create(t, customer, "r1")
	otherTask := e.create(t, customer, "r2")
	l := e.shareLink(t, customer, task.GetId(), durationpb.New(time.Hour))
	if task.GetDeliveryCode() == "" || task.GetDropoff().GetContact() == nil || task.GetCustomerId() == "" {
		t.Fatalf("the task has no code, contact or customer to hide: %v", task)
	}
	for name, p := range map[string]auth.Principal{"anonymous": anonymous, "another customer": other, "the customer": customer, "a dispatcher": dispatcher} {
		got, err := e.client.GetTask(callCtx(t, p), &dispatchv1.GetTaskRequest{Id: task.GetId(), ShareToken: l.GetToken()})
		if err != nil {
			t.Fatalf("GetTask with a share token as %s: %v", name, err)
		}
		checkShareView(t, "GetTask with a share token as "+name, got, task)
	}

	// One character of the signature changed, within the alphabet.
	bad := []byte(l.GetToken())
	if i := len(bad) - 5; bad[i] == 'A' {
		bad[i] = 'B'
	} else {
		bad[i] = 'A'
	}
	cases := []struct {
		name string
		p    auth.Principal
		req  *dispatchv1.GetTaskRequest
		want codes.Code
	}{
		{"another task's id", anonymous, &dispatchv1.GetTaskRequest{Id: otherTask.GetId(), ShareToken: l.GetToken()}, codes.NotFound},
		{"another task's id, as another customer", other, &dispatchv1.GetTaskRequest{Id: otherTask.GetId(), ShareToken: l.GetToken()}, codes.NotFound},
		{"a tampered token", anonymous, &dispatchv1.GetTaskRequest{Id: task.GetId(), ShareToken: string(bad)}, codes.NotFound},
		{"a token outside the alphabet", anonymous, &dispatchv1.GetTaskRequest{Id: task.GetId(), ShareToken: "not a token!"}, codes.InvalidArgument},
		{"no token", anonymous, &dispatchv1.GetTaskRequest{Id: task.GetId()}, codes.Unauthenticated},
	}
	for _, tc := range cases {
		_, err := e.client.GetTask(callCtx(t, tc.p), tc.req)
		wantCode(t, "GetTask with "+tc.name, err, tc.want)
	}

	// Every other RPC still needs credentials: a token opens GetTask and WatchTask only.
	_, err := e.client.ListTasks(callCtx(t, anonymous), &dispatchv1.ListTasksRequest{})
	wantCode(t, "ListTasks anonymously", err, codes.Unauthenticated)
	_, err = e.client.CancelTask(callCtx(t, anonymous), &dispatchv1.CancelTaskRequest{Id: task.GetId(), Reason: dispatchv1.CancelReason_CANCEL_REASON_OTHER})
	wantCode(t, "CancelTask anonymously", err, codes.Unauthenticated)
	_, err = e.client.CreateTaskShareLink(callCtx(t, anonymous), &dispatchv1.CreateTaskShareLinkRequest{TaskId: task.GetId()})
	wantCode(t, "CreateTaskShareLink anonymously", err, codes.Unauthenticated)

	// The link stops working at its expiry, on the service's clock.
	e.sys.Clock.Advance(time.Hour)
	_, err = e.client.GetTask(callCtx(t, anonymous), &dispatchv1.GetTaskRequest{Id: task.GetId(), ShareToken: l.GetToken()})
	wantCode(t, "GetTask with an expired share token", err, codes.NotFound)
}

func TestWatchTaskWithShareToken(t *testing.T) {
	e := start(t, true)
	task := e.create(t, customer, "r1")
	l := e.shareLink(t, customer, task.GetId(), durationpb.New(time.Hour))
	c := e.sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 300), geo.Bicycle, false)
	assigned, err := e.client.AssignTask(callCtx(t, dispatcher), &dispatchv1.AssignTaskRequest{Id: task.GetId(), CourierId: c.ID})
	if err != nil {
		t.Fatalf("AssignTask: %v", err)
	}
	stream, err := e.client.WatchTask(callCtx(t, anonymous), &dispatchv1.WatchTaskRequest{Id: task.GetId(), ShareToken: l.GetToken()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("WatchTask with a share token: %v", err)
	}
	checkShareView(t, "WatchTask's first message", first.GetTask(), assigned)
	at := dispatchtest.Near(dispatchtest.Berlin, 300)
	if first.GetCourierLocation().GetLocation().GetLatitude() != at.Lat || first.GetEta().GetPickupTime() == nil || first.GetEta().GetDropoffTime() == nil {
		t.Errorf("WatchTask's first message = %v, want the courier at %v and an ETA to both stops", first, at)
	}
	if _, err := e.client.CancelTask(callCtx(t, customer), &dispatchv1.CancelTaskRequest{Id: task.GetId(), Reason: dispatchv1.CancelReason_CANCEL_REASON_OTHER, Comment: "not home"}); err != nil {
		t.Fatal(err)
	}
	var last *dispatchv1.Task
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("WatchTask with a share token ended with %v, want OK after the final state", err)
		}
		if m.GetTask() != nil {
			last = m.GetTask()
		}
	}
	if last.GetState() != dispatchv1.TaskState_TASK_STATE_CANCELLED || last.GetCancelReason() != dispatchv1.CancelReason_CANCEL_REASON_OTHER ||
		last.GetCourierId() != "" || last.GetHistory()[len(last.GetHistory())-1].GetComment() != "" {
		t.Errorf("last task sent = %v, want CANCELLED (reason OTHER) in the share view", last)
	}

	watchCode := func(p auth.Principal, req *dispatchv1.WatchTaskRequest) error {
		stream, err := e.client.WatchTask(callCtx(t, p), req)
		if err == nil {
			_, err = stream.Recv()
		}
		return err
	}
	otherTask := e.create(t, customer, "r2")
	err = watchCode(anonymous, &dispatchv1.WatchTaskRequest{Id: otherTask.GetId(), ShareToken: l.GetToken()})
	wantCode(t, "WatchTask with another task's id", err, codes.NotFound)
	err = watchCode(other, &dispatchv1.WatchTaskRequest{Id: otherTask.GetId(), ShareToken: l.GetToken()})
	wantCode(t, "WatchTask with another task's id, as another customer", err, codes.NotFound)
	e.sys.Clock.Advance(time.Hour)
	err = watchCode(anonymous, &dispatchv1.WatchTaskRequest{Id: task.GetId(), ShareToken: l.GetToken()})
	wantCode(t, "WatchTask with an expired token", err, codes.NotFound)
	err = watchCode(anonymous, &dispatchv1.WatchTaskRequest{Id: task.GetId()})
	wantCode(t, "WatchTask anonymously without a token", err, codes.Unauthenticated)
}
