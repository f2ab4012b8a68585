package grpcapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/blob"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/dispatch/grpcapi"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTimeout = 60 * time.Second

// env is a dispatch service on the real SQLite store (dispatchtest's System, with fake courier and route
// services), served over bufconn through grpcserver's full interceptor chain with dispatch's policy.
type env struct {
	sys    *dispatchtest.System
	svc    *dispatch.Service
	api    *grpcapi.Server
	client dispatchv1.DispatchServiceClient
	store  *flakyStore
}

// flakyStore is the real store, except that CreateTaskCapped answers Aborted for the request id
// "in-flight", as the store does while another call with the same request id is still in flight.
type flakyStore struct {
	dispatch.Store
}

func (f *flakyStore) CreateTaskCapped(ctx context.Context, t dispatch.Task, maxOpen int64) (dispatch.Task, bool, error) {
	if t.RequestID == "in-flight" {
		return dispatch.Task{}, false, apperr.Errorf(apperr.Aborted, "another call with request id %s is in flight", t.RequestID)
	}
	return f.Store.CreateTaskCapped(ctx, t, maxOpen)
}

// start serves a dispatch service. The system's own service does not run: the work queue is left alone,
// so tasks stay where the test puts them. run also runs the served service's loop (sessions, watches).
func start(t *testing.T, run bool) *env {
	t.Helper()
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	e := &env{sys: sys, store: &flakyStore{Store: sys.Store}}
	blobs, err := blob.NewFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e.svc = dispatch.NewService(dispatch.Deps{Store: e.store, Uploads: sys.Store.Uploads(), ShareKeys: sys.Store.ShareKeys(), Blobs: blobs, Couriers: sys.Couriers, Routes: sys.Routes, Events: sys.Events},
		dispatch.Options{Now: sys.Clock.Now, Logger: testLogger()})
	e.api = grpcapi.NewServer(e.svc)
	_, conn := grpctest.Start(t, grpcserver.Config{Policy: grpcapi.Policy(), Authenticator: grpctest.HeaderAuthenticator{}},
		func(s *grpc.Server) { grpcapi.Register(s, e.api) })
	e.client = dispatchv1.NewDispatchServiceClient(conn)
	if run {
		grpctest.Go(t, "dispatch.Service.Run", e.svc.Run)
	}
	return e
}

func userID(n int) string { return fmt.Sprintf("0190b000-0000-7000-8000-%012d", n) }
func taskID(n int) string { return fmt.Sprintf("0190c000-0000-7000-8000-%012d", n) }

func as(n int, role string) auth.Principal {
	return auth.Principal{Kind: auth.User, Subject: userID(n), Roles: []string{role}}
}

var (
	customer   = as(1, auth.RoleCustomer)
	other      = as(2, auth.RoleCustomer)
	dispatcher = as(900, auth.RoleDispatcher)
	admin      = as(901, auth.RoleAdmin)
	simulator  = auth.Principal{Kind: auth.Service, Subject: "simulator"}
)

func callCtx(t *testing.T, p auth.Principal) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return grpctest.CallAs(ctx, p)
}

func courierP(c dispatchtest.Courier) auth.Principal {
	return auth.Principal{Kind: auth.User, Subject: c.UserID, Roles: []string{auth.RoleCourier}}
}

func wantCode(t *testing.T, call string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s error = %v, want code %v", call, err, want)
	}
}

func point(p geo.LatLng) *geov1.LatLng { return &geov1.LatLng{Latitude: p.Lat, Longitude: p.Lng} }

// createReq is a valid CreateTaskRequest with request id rid, picking up in central Berlin.
func createReq(rid string) *dispatchv1.CreateTaskRequest {
	return &dispatchv1.CreateTaskRequest{
		RequestId: rid,
		Pickup:    &dispatchv1.Stop{Location: point(dispatchtest.Berlin), Address: "Alexanderplatz 1"},
		Dropoff: &dispatchv1.Stop{Location: point(dispatchtest.Near(dispatchtest.Berlin, 2000)), Address: "Torstrasse 2",
			Contact: &dispatchv1.Contact{Name: "Ada", Phone: "+4915112345678"}, Instructions: "ring twice"},
		ProofRequirements: []*dispatchv1.ProofRequirement{{Kind: dispatchv1.ProofKind_PROOF_KIND_CODE, Stage: dispatchv1.TaskStage_TASK_STAGE_DROPOFF, Policy: dispatchv1.ProofPolicy_PROOF_POLICY_REQUIRED}},
	}
}

func (e *env) create(t *testing.T, p auth.Principal, rid string) *dispatchv1.Task {
	t.Helper()
	req := createReq(rid)
	if p.Kind != auth.User || p.HasRole(auth.RoleDispatcher) || p.HasRole(auth.RoleAdmin) {
		req.CustomerId = userID(1)
	}
	task, err := e.client.CreateTask(callCtx(t, p), req)
	if err != nil {
		t.Fatalf("CreateTask(%s): %v", rid, err)
	}
	return task
}

func TestCreateTask(t *testing.T) {
	e := start(t, false)
	task := e.create(t, customer, "r1")
	if task.GetState() != dispatchv1.TaskState_TASK_STATE_PENDING || task.GetCustomerId() != userID(1) || task.GetRequestId() != "r1" ||
		task.GetEtag() != `"1"` || len(task.GetDeliveryCode()) != 4 || task.GetCurrentOffer() != nil || len(task.GetHistory()) != 1 ||
		task.GetHistory()[0].GetActor() != dispatchv1.Actor_ACTOR_CUSTOMER || task.GetPriority() != dispatchv1.TaskPriority_TASK_PRIORITY_NORMAL ||
		task.GetSize() != dispatchv1.ParcelSize_PARCEL_SIZE_SMALL || task.GetDropoff().GetContact().GetName() != "Ada" {
		t.Errorf("CreateTask = %v", task)
	}
	again := e.create(t, customer, "r1")
	if again.GetId() != task.GetId() {
		t.Errorf("CreateTask(same request) = task %s, want %s", again.GetId(), task.GetId())
	}
	if sim := e.create(t, simulator, "r1"); sim.GetId() == task.GetId() {
		t.Errorf("CreateTask(same request id, another caller) = the first caller's task")
	}

	changed := createReq("r1")
	changed.Notes = "different"
	_, err := e.client.CreateTask(callCtx(t, customer), changed)
	wantCode(t, "CreateTask(request id reused with other fields)", err, codes.AlreadyExists)

	past := createReq("r2")
	past.Pickup.TimeWindow = &dispatchv1.TimeWindow{StartTime: timestamppb.New(e.sys.Clock.Now().Add(-2 * time.Hour)), EndTime: timestamppb.New(e.sys.Clock.Now().Add(-time.Hour))}
	_, err = e.client.CreateTask(callCtx(t, customer), past)
	wantCode(t, "CreateTask(window ended)", err, codes.InvalidArgument)
	noPickup := createReq("r3")
	noPickup.Pickup = nil
	_, err = e.client.CreateTask(callCtx(t, customer), noPickup)
	wantCode(t, "CreateTask(no pickup)", err, codes.InvalidArgument)
	noCustomer := createReq("r4")
	_, err = e.client.CreateTask(callCtx(t, dispatcher), noCustomer)
	wantCode(t, "CreateTask(dispatcher, no customer)", err, codes.InvalidArgument)

	forOther := createReq("r5")
	forOther.CustomerId = userID(2)
	_, err = e.client.CreateTask(callCtx(t, customer), forOther)
	wantCode(t, "CreateTask(for another customer)", err, codes.PermissionDenied)
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	_, err = e.client.CreateTask(callCtx(t, courierP(c)), createReq("r6"))
	wantCode(t, "CreateTask as courier", err, codes.PermissionDenied)
	_, err = e.client.CreateTask(callCtx(t, auth.Principal{}), createReq("r7"))
	wantCode(t, "CreateTask anonymously", err, codes.Unauthenticated)
	_, err = e.client.CreateTask(callCtx(t, customer), createReq("in-flight"))
	wantCode(t, "CreateTask(request in flight)", err, codes.Aborted)
}

func TestGetAndListTasks(t *testing.T) {
	e := start(t, false)
	t1 := e.create(t, customer, "r1")
	t2 := e.create(t, customer, "r2")
	t3 := e.create(t, dispatcher, "r3") // for customer 1 too
	_ = e.create(t, other, "r4")

	got, err := e.client.GetTask(callCtx(t, customer), &dispatchv1.GetTaskRequest{Id: t1.GetId()})
	if err != nil || got.GetId() != t1.GetId() || len(got.GetHistory()) != 1 || got.GetDeliveryCode() != t1.GetDeliveryCode() {
		t.Errorf("GetTask(own, default FULL) = %v, %v", got, err)
	}
	got, err = e.client.GetTask(callCtx(t, customer), &dispatchv1.GetTaskRequest{Id: t1.GetId(), View: dispatchv1.TaskView_TASK_VIEW_BASIC})
	if err != nil || len(got.GetHistory()) != 0 {
		t.Errorf("GetTask(BASIC) = %v, %v; want no history", got, err)
	}
	_, err = e.client.GetTask(callCtx(t, other), &dispatchv1.GetTaskRequest{Id: t1.GetId()})
	wantCode(t, "GetTask(another customer's)", err, codes.NotFound)
	_, err = e.client.GetTask(callCtx(t, dispatcher), &dispatchv1.GetTaskRequest{Id: taskID(9)})
	wantCode(t, "GetTask(no such task)", err, codes.NotFound)
	_, err = e.client.GetTask(callCtx(t, dispatcher), &dispatchv1.GetTaskRequest{Id: "not-a-uuid"})
	wantCode(t, "GetTask(malformed id)", err, codes.InvalidArgument)

	page, err := e.client.ListTasks(callCtx(t, customer), &dispatchv1.ListTasksRequest{PageSize: 2})
	if err != nil || page.GetTotalSize() != 3 || len(page.GetTasks()) != 2 || page.GetTasks()[0].GetId() != t3.GetId() ||
		page.GetTasks()[1].GetId() != t2.GetId() || page.GetNextPageToken() == "" || len(page.GetTasks()[0].GetHistory()) != 0 {
		t.Fatalf("ListTasks(customer, 2) = %v, %v; want t3, t2 of 3, BASIC", page, err)
	}
	page, err = e.client.ListTasks(callCtx(t, customer), &dispatchv1.ListTasksRequest{PageSize: 2, PageToken: page.GetNextPageToken(), View: dispatchv1.TaskView_TASK_VIEW_FULL})
	if err != nil || len(page.GetTasks()) != 1 || page.GetTasks()[0].GetId() != t1.GetId() || page.GetNextPageToken() != "" || len(page.GetTasks()[0].GetHistory()) != 1 {
		t.Errorf("ListTasks(page 2, FULL) = %v, %v; want t1 with history, last page", page, err)
	}
	all, err := e.client.ListTasks(callCtx(t, admin), &dispatchv1.ListTasksRequest{States: []dispatchv1.TaskState{dispatchv1.TaskState_TASK_STATE_PENDING}})
	if err != nil || all.GetTotalSize() != 4 {
		t.Errorf("ListTasks(admin, pending) = %v, %v; want 4", all, err)
	}
	_, err = e.client.ListTasks(callCtx(t, customer), &dispatchv1.ListTasksRequest{PageToken: "garbage"})
	wantCode(t, "ListTasks(malformed token)", err, codes.InvalidArgument)
	_, err = e.client.ListTasks(callCtx(t, customer), &dispatchv1.ListTasksRequest{CustomerId: userID(2)})
	wantCode(t, "ListTasks(another customer's)", err, codes.PermissionDenied)
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	_, err = e.client.ListTasks(callCtx(t, courierP(c)), &dispatchv1.ListTasksRequest{CourierId: taskID(5)})
	wantCode(t, "ListTasks(another courier's)", err, codes.PermissionDenied)
	mine, err := e.client.ListTasks(callCtx(t, courierP(c)), &dispatchv1.ListTasksRequest{})
	if err != nil || mine.GetTotalSize() != 0 {
		t.Errorf("ListTasks(courier without tasks) = %v, %v", mine, err)
	}
}

func TestAssignExplainAndCourierStatus(t *testing.T) {
	e := start(t, false)
	task := e.create(t, customer, "r1")
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	req := &dispatchv1.AssignTaskRequest{Id: task.GetId(), CourierId: c.ID, Comment: "closest", Etag: task.GetEtag()}

	_, err := e.client.AssignTask(callCtx(t, customer), req)
	wantCode(t, "AssignTask as customer", err, codes.PermissionDenied)
	_, err = e.client.AssignTask(callCtx(t, dispatcher), &dispatchv1.AssignTaskRequest{Id: taskID(9), CourierId: c.ID})
	wantCode(t, "AssignTask(no such task)", err, codes.NotFound)
	_, err = e.client.AssignTask(callCtx(t, dispatcher), &dispatchv1.AssignTaskRequest{Id: task.GetId(), CourierId: taskID(8)})
	wantCode(t, "AssignTask(no such courier)", err, codes.NotFound)
	_, err = e.client.AssignTask(callCtx(t, dispatcher), &dispatchv1.AssignTaskRequest{Id: task.GetId(), CourierId: c.ID, Etag: `"7"`})
	wantCode(t, "AssignTask(stale etag)", err, codes.Aborted)
	e.sys.Couriers.SetStatus(c.ID, dispatch.CourierOffline)
	_, err = e.client.AssignTask(callCtx(t, dispatcher), req)
	wantCode(t, "AssignTask(courier offline)", err, codes.FailedPrecondition)
	e.sys.Couriers.SetStatus(c.ID, dispatch.CourierAvailable)
	e.sys.Couriers.SetDown(true)
	_, err = e.client.AssignTask(callCtx(t, dispatcher), req)
	wantCode(t, "AssignTask(courier service down)", err, codes.Unavailable)
	_, err = e.client.GetCourierStatus(callCtx(t, dispatcher), &dispatchv1.GetCourierStatusRequest{CourierId: c.ID})
	wantCode(t, "GetCourierStatus(courier service down)", err, codes.Unavailable)
	e.sys.Couriers.SetDown(false)

	assigned, err := e.client.AssignTask(callCtx(t, dispatcher), req)
	if err != nil || assigned.GetState() != dispatchv1.TaskState_TASK_STATE_ASSIGNED || assigned.GetCourierId() != c.ID || assigned.GetEtag() != `"2"` {
		t.Fatalf("AssignTask = %v, %v; want ASSIGNED to %s, etag 2", assigned, err, c.ID)
	}

	ex, err := e.client.ExplainAssignment(callCtx(t, dispatcher), &dispatchv1.ExplainAssignmentRequest{Id: task.GetId()})
	if err != nil || ex.GetTaskState() != dispatchv1.TaskState_TASK_STATE_ASSIGNED || len(ex.GetDecisions()) != 1 {
		t.Fatalf("ExplainAssignment = %v, %v; want one decision", ex, err)
	}
	d := ex.GetDecisions()[0]
	if d.GetTrigger() != dispatchv1.DecisionTrigger_DECISION_TRIGGER_DISPATCHER_OVERRIDE || d.GetOutcome() != dispatchv1.DecisionOutcome_DECISION_OUTCOME_DISPATCHER_ASSIGNED ||
		d.GetWinnerCourierId() != c.ID || d.GetRationale() != "assigned by a dispatcher: closest" || len(d.GetCandidates()) != 1 || d.GetCandidates()[0].GetRank() != 1 {
		t.Errorf("decision = %v", d)
	}
	_, err = e.client.ExplainAssignment(callCtx(t, customer), &dispatchv1.ExplainAssignmentRequest{Id: task.GetId()})
	wantCode(t, "ExplainAssignment as customer", err, codes.PermissionDenied)
	_, err = e.client.ExplainAssignment(callCtx(t, admin), &dispatchv1.ExplainAssignmentRequest{Id: taskID(9)})
	wantCode(t, "ExplainAssignment(no such task)", err, codes.NotFound)

	for _, p := range []auth.Principal{dispatcher, courierP(c)} {
		o, err := e.client.GetCourierStatus(callCtx(t, p), &dispatchv1.GetCourierStatusRequest{CourierId: c.ID})
		if err != nil || o.GetCourier().GetCourierId() != c.ID || o.GetCourier().GetTransportMode() != geov1.TransportMode_TRANSPORT_MODE_BICYCLE ||
			len(o.GetActiveTasks()) != 1 || o.GetActiveTasks()[0].GetId() != task.GetId() || len(o.GetOpenOffers()) != 0 {
			t.Errorf("GetCourierStatus as %s = %v, %v; want the courier with the task", p.Roles, o, err)
		}
	}
	c2 := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Car, false)
	_, err = e.client.GetCourierStatus(callCtx(t, courierP(c2)), &dispatchv1.GetCourierStatusRequest{CourierId: c.ID})
	wantCode(t, "GetCourierStatus(another courier's)", err, codes.NotFound)
	_, err = e.client.GetCourierStatus(callCtx(t, customer), &dispatchv1.GetCourierStatusRequest{CourierId: c.ID})
	wantCode(t, "GetCourierStatus as customer", err, codes.PermissionDenied)
	_, err = e.client.GetCourierStatus(callCtx(t, dispatcher), &dispatchv1.GetCourierStatusRequest{CourierId: taskID(8)})
	wantCode(t, "GetCourierStatus(no such courier)", err, codes.NotFound)

	// Once picked up, the task can be neither reassigned nor cancelled.
	res := e.svc.Execute(c.Ctx, c.ID, "pickup-1", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: task.GetId()}})
	if res.Err != nil {
		t.Fatalf("pickup: %+v", res.Err)
	}
	_, err = e.client.AssignTask(callCtx(t, dispatcher), &dispatchv1.AssignTaskRequest{Id: task.GetId(), CourierId: c2.ID})
	wantCode(t, "AssignTask(picked up)", err, codes.FailedPrecondition)
	_, err = e.client.CancelTask(callCtx(t, customer), &dispatchv1.CancelTaskRequest{Id: task.GetId(), Reason: dispatchv1.CancelReason_CANCEL_REASON_CUSTOMER_REQUEST})
	wantCode(t, "CancelTask(picked up)", err, codes.FailedPrecondition)
}

func TestCancelTask(t *testing.T) {
	e := start(t, false)
	task := e.create(t, customer, "r1")
	req := &dispatchv1.CancelTaskRequest{Id: task.GetId(), Reason: dispatchv1.CancelReason_CANCEL_REASON_DUPLICATE, Comment: "twice", Etag: task.GetEtag()}

	_, err := e.client.CancelTask(callCtx(t, other), req)
	wantCode(t, "CancelTask(another customer's)", err, codes.NotFound)
	_, err = e.client.CancelTask(callCtx(t, customer), &dispatchv1.CancelTaskRequest{Id: taskID(9), Reason: dispatchv1.CancelReason_CANCEL_REASON_OTHER})
	wantCode(t, "CancelTask(no such task)", err, codes.NotFound)
	_, err = e.client.CancelTask(callCtx(t, customer), &dispatchv1.CancelTaskRequest{Id: task.GetId(), Reason: dispatchv1.CancelReason_CANCEL_REASON_OTHER, Etag: `"5"`})
	wantCode(t, "CancelTask(stale etag)", err, codes.Aborted)
	_, err = e.client.CancelTask(callCtx(t, customer), &dispatchv1.CancelTaskRequest{Id: task.GetId()})
	wantCode(t, "CancelTask(no reason)", err, codes.InvalidArgument)
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	_, err = e.client.CancelTask(callCtx(t, courierP(c)), req)
	wantCode(t, "CancelTask as courier", err, codes.PermissionDenied)

	got, err := e.client.CancelTask(callCtx(t, customer), req)
	if err != nil || got.GetState() != dispatchv1.TaskState_TASK_STATE_CANCELLED || got.GetCancelReason() != dispatchv1.CancelReason_CANCEL_REASON_DUPLICATE ||
		got.GetFinishTime() == nil || got.GetHistory()[len(got.GetHistory())-1].GetComment() != "twice" {
		t.Fatalf("CancelTask = %v, %v", got, err)
	}
	again, err := e.client.CancelTask(callCtx(t, dispatcher), &dispatchv1.CancelTaskRequest{Id: task.GetId(), Reason: dispatchv1.CancelReason_CANCEL_REASON_OTHER})
	if err != nil || again.GetEtag() != got.GetEtag() {
		t.Errorf("CancelTask(cancelled) = %v, %v; want it unchanged", again, err)
	}
}

// TestUploadReadErrors: the documented errors of GetUpload and GetProofContent through the served policy.
func TestUploadReadErrors(t *testing.T) {
	e := start(t, false)
	task := e.create(t, customer, "r1")
	_, err := e.client.GetUpload(callCtx(t, dispatcher), &dispatchv1.GetUploadRequest{UploadId: taskID(1)})
	wantCode(t, "GetUpload(no such upload)", err, codes.NotFound)
	_, err = e.client.GetUpload(callCtx(t, customer), &dispatchv1.GetUploadRequest{UploadId: taskID(1)})
	wantCode(t, "GetUpload as customer", err, codes.NotFound)
	_, err = e.client.GetUpload(callCtx(t, dispatcher), &dispatchv1.GetUploadRequest{UploadId: "x"})
	wantCode(t, "GetUpload(malformed id)", err, codes.InvalidArgument)
	stream, err := e.client.GetProofContent(callCtx(t, customer), &dispatchv1.GetProofContentRequest{TaskId: task.GetId(), UploadId: taskID(1)})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "GetProofContent(no such upload)", err, codes.NotFound)
	stream, err = e.client.GetProofContent(callCtx(t, simulator), &dispatchv1.GetProofContentRequest{TaskId: task.GetId(), UploadId: taskID(1)})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "GetProofContent as a service", err, codes.PermissionDenied)
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	up, err := e.client.UploadProof(callCtx(t, courierP(c)))
	if err == nil {
		err = up.Send(&dispatchv1.UploadProofRequest{Kind: &dispatchv1.UploadProofRequest_Start{Start: &dispatchv1.UploadStart{TaskId: task.GetId(),
			Kind: dispatchv1.ProofKind_PROOF_KIND_PHOTO, ContentType: "image/png", SizeBytes: 10, Sha256: strings.Repeat("a", 64)}}})
	}
	if err == nil {
		_, err = up.Recv()
	}
	wantCode(t, "UploadProof for a task the courier never saw", err, codes.NotFound)
}

// TestGetUploadAnswersNotFoundToWhoMayNotSeeIt: only the courier who started an upload, dispatchers and
// administrators read it; everyone else, the task's own customer included, gets NOT_FOUND, as for an
// upload that does not exist (GetUpload: "NOT_FOUND when the upload does not exist, was discarded, or the
// caller may not see it"), never PERMISSION_DENIED, which told a customer that the call itself was the
// problem. UploadProof is for couriers only: anyone else gets PERMISSION_DENIED before any task is read.
func TestGetUploadAnswersNotFoundToWhoMayNotSeeIt(t *testing.T) {
	e := start(t, false)
	task := e.create(t, customer, "r1")
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	if _, err := e.client.AssignTask(callCtx(t, dispatcher), &dispatchv1.AssignTaskRequest{Id: task.GetId(), CourierId: c.ID}); err != nil {
		t.Fatalf("AssignTask: %v", err)
	}
	start := &dispatchv1.UploadProofRequest{Kind: &dispatchv1.UploadProofRequest_Start{Start: &dispatchv1.UploadStart{TaskId: task.GetId(),
		Kind: dispatchv1.ProofKind_PROOF_KIND_PHOTO, ContentType: "image/png", SizeBytes: 10, Sha256: strings.Repeat("a", 64)}}}
	up, err := e.client.UploadProof(callCtx(t, courierP(c)))
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Send(start); err != nil {
		t.Fatal(err)
	}
	first, err := up.Recv()
	if err != nil || first.GetUpload().GetId() == "" {
		t.Fatalf("UploadProof start = %v, %v; want the new upload", first, err)
	}
	id := first.GetUpload().GetId()
	if err := up.CloseSend(); err != nil {
		t.Fatal(err)
	}

	stranger := courierP(e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false))
	for _, r := range []struct {
		name string
		p    auth.Principal
		want codes.Code
	}{
		{"the uploading courier", courierP(c), codes.OK},
		{"a dispatcher", dispatcher, codes.OK},
		{"an administrator", admin, codes.OK},
		{"the task's customer", customer, codes.NotFound},
		{"another customer", other, codes.NotFound},
		{"another courier", stranger, codes.NotFound},
	} {
		got, err := e.client.GetUpload(callCtx(t, r.p), &dispatchv1.GetUploadRequest{UploadId: id})
		wantCode(t, "GetUpload as "+r.name, err, r.want)
		if r.want == codes.OK && (got.GetId() != id || got.GetState() != dispatchv1.UploadState_UPLOAD_STATE_IN_PROGRESS) {
			t.Errorf("GetUpload as %s = %v, want upload %s IN_PROGRESS", r.name, got, id)
		}
	}

	up, err = e.client.UploadProof(callCtx(t, customer))
	if err == nil {
		// Send fails with io.EOF when the server already ended the stream; Recv then has its status.
		_ = up.Send(start)
		_, err = up.Recv()
	}
	wantCode(t, "UploadProof as the task's customer", err, codes.PermissionDenied)
}

// testLogger discards the service's log, or writes it to stderr with LASTMILE_TEST_LOG set.
func testLogger() *slog.Logger {
	if os.Getenv("LASTMILE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}
