package e2e_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/platform/database/databasetest"
)

// Where the dispatch tests happen: a courier in Berlin-Mitte, a pickup about 450 m away and a dropoff
// about 1.5 km further on, well inside dispatch's first search radius (3 km).
const (
	courierLat, courierLng = 52.5200, 13.4050
	pickupLat, pickupLng   = 52.5230, 13.4100
	dropoffLat, dropoffLng = 52.5300, 13.4300
)

// restProto sends one REST request like rest and, when the answer is 200, decodes its JSON body into out
// (unknown fields are an error: the gateway must speak the contract). It returns the status and the body.
func (s *system) restProto(t *testing.T, method, path, token, body string, out proto.Message) (int, map[string]any) {
	t.Helper()
	code, _, m := s.rest(t, method, path, token, body)
	if (code == http.StatusOK || code == http.StatusCreated) && out != nil {
		if err := protojson.Unmarshal([]byte(mustJSON(t, m)), out); err != nil {
			t.Fatalf("%s %s: body %v is not a %s: %v", method, path, m, out.ProtoReflect().Descriptor().FullName(), err)
		}
	}
	return code, m
}

// goAvailable makes the courier AVAILABLE over REST and reports one fresh location fix at lat, lng over
// gRPC with the courier's token, as the courier app does when a shift starts.
func goAvailable(ctx context.Context, t *testing.T, rest *system, couriers courierv1.CourierServiceClient, courierID, token string, lat, lng float64) {
	t.Helper()
	code, _, body := rest.rest(t, http.MethodPost, "/v1/couriers/"+courierID+":setStatus", token, `{"status": "COURIER_STATUS_AVAILABLE"}`)
	if code != http.StatusOK || str(body, "status") != "COURIER_STATUS_AVAILABLE" {
		t.Fatalf("setStatus AVAILABLE as the courier = %d %v, want 200 and AVAILABLE", code, body)
	}
	// Recorded two minutes ago, so that the ride to the pickup (moveTo) is at a plausible speed for a
	// bicycle, and still fresh enough for dispatch (5 minutes).
	moveTo(ctx, t, couriers, courierID, token, lat, lng, time.Now().Add(-2*time.Minute))
}

// moveTo reports one location fix of the courier at lat, lng, recorded at when.
func moveTo(ctx context.Context, t *testing.T, couriers courierv1.CourierServiceClient, courierID, token string, lat, lng float64, when time.Time) {
	t.Helper()
	sum, err := report(bearer(ctx, token), couriers, courierID, fix(lat, lng, when))
	if err != nil || sum.GetAcceptedCount() != 1 {
		t.Fatalf("ReportLocations at (%v, %v) = %v, %v; want 1 accepted", lat, lng, sum, err)
	}
}

// courierStream is one StreamAssignments session of a courier app.
type courierStream struct {
	t       *testing.T
	stream  dispatchv1.DispatchService_StreamAssignmentsClient
	started *dispatchv1.SessionStarted
}

// openSession opens StreamAssignments with token, sends hello with the resume cursor and epoch, and
// returns the session once started arrived.
func openSession(ctx context.Context, t *testing.T, client dispatchv1.DispatchServiceClient, token string, cursor, epoch int64) *courierStream {
	t.Helper()
	stream, err := client.StreamAssignments(bearer(ctx, token))
	if err != nil {
		t.Fatalf("StreamAssignments: %v", err)
	}
	if err := stream.Send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Hello{
		Hello: &dispatchv1.SessionHello{ResumeCursor: cursor, CursorEpoch: epoch, AppVersion: "e2e/1.0"},
	}}); err != nil {
		t.Fatalf("send hello: %v", err)
	}
	cs := &courierStream{t: t, stream: stream}
	msg := cs.recv()
	cs.started = msg.GetStarted()
	if cs.started == nil || msg.GetCursor() != 0 || msg.GetServerTime() == nil {
		t.Fatalf("first message of the session = %v, want started with cursor 0 and server_time", msg)
	}
	return cs
}

// recv returns the next message of the session, failing the test when the stream ends. Every message must
// carry the server's clock.
func (c *courierStream) recv() *dispatchv1.StreamAssignmentsResponse {
	c.t.Helper()
	msg, err := c.stream.Recv()
	if err != nil {
		c.t.Fatalf("StreamAssignments Recv: %v", err)
	}
	if msg.GetServerTime() == nil {
		c.t.Errorf("session message %v has no server_time", msg)
	}
	return msg
}

// nextOffer returns the next message, which must be an offer delivery with a cursor.
func (c *courierStream) nextOffer() (*dispatchv1.OfferNotice, int64) {
	c.t.Helper()
	msg := c.recv()
	if msg.GetOffer() == nil || msg.GetCursor() <= 0 {
		c.t.Fatalf("session message = %v, want an offer delivery with a cursor", msg)
	}
	return msg.GetOffer(), msg.GetCursor()
}

// command sends one command under id and returns its result, which must be the next message.
func (c *courierStream) command(id string, req *dispatchv1.StreamAssignmentsRequest) *dispatchv1.CommandResult {
	c.t.Helper()
	req.CommandId = id
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send command %s: %v", id, err)
	}
	msg := c.recv()
	res := msg.GetCommandResult()
	if res == nil || msg.GetCursor() != 0 || res.GetCommandId() != id {
		c.t.Fatalf("answer to command %s = %v, want its command_result with cursor 0", id, msg)
	}
	return res
}

// succeed sends a command that must succeed and leave the task in state want; it returns the task.
func (c *courierStream) succeed(id string, req *dispatchv1.StreamAssignmentsRequest, want dispatchv1.TaskState) *dispatchv1.Task {
	c.t.Helper()
	res := c.command(id, req)
	if res.GetError() != nil || res.GetReplayed() || res.GetTask().GetState() != want {
		c.t.Fatalf("command %s = %v, want success, not replayed, with the task %v", id, res, want)
	}
	return res.GetTask()
}

// ack acknowledges every delivery up to cursor.
func (c *courierStream) ack(cursor int64) {
	c.t.Helper()
	if err := c.stream.Send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Ack{
		Ack: &dispatchv1.Acknowledge{Cursor: cursor},
	}}); err != nil {
		c.t.Fatalf("send ack %d: %v", cursor, err)
	}
}

func acceptCmd(offerID string) *dispatchv1.StreamAssignmentsRequest {
	return &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{
		Accept: &dispatchv1.AcceptOffer{OfferId: offerID}}}
}

func pickupCmd(taskID string) *dispatchv1.StreamAssignmentsRequest {
	return &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{
		PickedUp: &dispatchv1.ConfirmPickup{TaskId: taskID, Location: &geov1.LatLng{Latitude: pickupLat, Longitude: pickupLng}}}}
}

func deliverCmd(taskID string, uploads ...string) *dispatchv1.StreamAssignmentsRequest {
	return &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Delivered{
		Delivered: &dispatchv1.ConfirmDelivery{TaskId: taskID, ProofUploadIds: uploads,
			Location: &geov1.LatLng{Latitude: dropoffLat, Longitude: dropoffLng}}}}
}

// checkOffer checks an offer delivery: an OPEN offer of taskID to courierID with a deadline, and the task.
func checkOffer(t *testing.T, n *dispatchv1.OfferNotice, taskID, courierID string) {
	t.Helper()
	o := n.GetOffer()
	if o.GetId() == "" || o.GetTaskId() != taskID || o.GetCourierId() != courierID || o.GetState() != dispatchv1.OfferState_OFFER_STATE_OPEN ||
		!o.GetExpireTime().AsTime().After(o.GetCreateTime().AsTime()) || n.GetTask().GetId() != taskID {
		t.Fatalf("offer = %v, want an OPEN offer of task %s to courier %s with expire_time after create_time, with its task", n, taskID, courierID)
	}
}

// taskRequest is CreateTask's request between the test's pickup and dropoff.
func taskRequest(requestID string) *dispatchv1.CreateTaskRequest {
	return &dispatchv1.CreateTaskRequest{
		RequestId: requestID,
		Pickup:    &dispatchv1.Stop{Location: &geov1.LatLng{Latitude: pickupLat, Longitude: pickupLng}, Address: "Rosenthaler Str. 40, Berlin"},
		Dropoff:   &dispatchv1.Stop{Location: &geov1.LatLng{Latitude: dropoffLat, Longitude: dropoffLng}, Address: "Greifswalder Str. 80, Berlin"},
		Notes:     "fragile",
	}
}

// forCustomer sets req's customer_id (for staff's creates) and returns req.
func forCustomer(req *dispatchv1.CreateTaskRequest, customerID string) *dispatchv1.CreateTaskRequest {
	req.CustomerId = customerID
	return req
}

// createTaskREST creates a task over REST (POST /v1/tasks) as the holder of token and returns it.
func createTaskREST(t *testing.T, s *system, token, requestID string) *dispatchv1.Task {
	t.Helper()
	task := &dispatchv1.Task{}
	code, body := s.restProto(t, http.MethodPost, "/v1/tasks", token, protojson.Format(taskRequest(requestID)), task)
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/tasks = %d %v, want 201", code, body)
	}
	if task.GetId() == "" || task.GetState() != dispatchv1.TaskState_TASK_STATE_PENDING || task.GetRequestId() != requestID ||
		task.GetEtag() == "" || task.GetPickup().GetAddress() != "Rosenthaler Str. 40, Berlin" {
		t.Fatalf("POST /v1/tasks = %v, want a PENDING task with an id, an etag, request id %s and the pickup", task, requestID)
	}
	return task
}

// photo returns a small PNG image.
func photo(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 16, 12))
	for x := range 16 {
		for y := range 12 {
			img.Set(x, y, color.RGBA{R: uint8(16 * x), G: uint8(20 * y), B: 128, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// uploadPhoto uploads data as a PNG photo proof of taskID with UploadProof, in two chunks, and returns the
// COMMITTED upload.
func uploadPhoto(ctx context.Context, t *testing.T, client dispatchv1.DispatchServiceClient, token, taskID string, data []byte) *dispatchv1.Upload {
	t.Helper()
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	stream, err := client.UploadProof(bearer(ctx, token))
	if err != nil {
		t.Fatalf("UploadProof: %v", err)
	}
	exchange := func(req *dispatchv1.UploadProofRequest) *dispatchv1.Upload {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatalf("UploadProof Send: %v", err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("UploadProof Recv: %v", err)
		}
		return resp.GetUpload()
	}
	u := exchange(&dispatchv1.UploadProofRequest{Kind: &dispatchv1.UploadProofRequest_Start{Start: &dispatchv1.UploadStart{
		TaskId: taskID, Kind: dispatchv1.ProofKind_PROOF_KIND_PHOTO, ContentType: "image/png",
		SizeBytes: int64(len(data)), Sha256: digest, CaptureTime: timestamppb.Now(),
	}}})
	if u.GetId() == "" || u.GetTaskId() != taskID || u.GetState() != dispatchv1.UploadState_UPLOAD_STATE_IN_PROGRESS || u.GetCommittedOffset() != 0 {
		t.Fatalf("UploadProof answer to start = %v, want an IN_PROGRESS upload of task %s at offset 0", u, taskID)
	}
	half := int64(len(data) / 2)
	for _, part := range []struct{ from, to int64 }{{0, half}, {half, int64(len(data))}} {
		u = exchange(&dispatchv1.UploadProofRequest{Kind: &dispatchv1.UploadProofRequest_Chunk{Chunk: &dispatchv1.UploadChunk{
			Offset: part.from, Data: data[part.from:part.to],
		}}})
		if u.GetCommittedOffset() != part.to || u.GetState() != dispatchv1.UploadState_UPLOAD_STATE_IN_PROGRESS {
			t.Fatalf("UploadProof answer to the chunk [%d, %d) = %v, want IN_PROGRESS at offset %d", part.from, part.to, u, part.to)
		}
	}
	u = exchange(&dispatchv1.UploadProofRequest{Kind: &dispatchv1.UploadProofRequest_Finish{Finish: &dispatchv1.UploadFinish{}}})
	if u.GetState() != dispatchv1.UploadState_UPLOAD_STATE_COMMITTED || u.GetSizeBytes() != int64(len(data)) || u.GetSha256() != digest ||
		u.GetContentType() != "image/png" || u.GetKind() != dispatchv1.ProofKind_PROOF_KIND_PHOTO {
		t.Fatalf("UploadProof answer to finish = %v, want a COMMITTED PNG photo of %d bytes with SHA-256 %s", u, len(data), digest)
	}
	if resp, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("UploadProof after COMMITTED: %v, %v; want the stream to end with OK", resp, err)
	}
	return u
}

// taskWatcher reads a WatchTask stream and remembers what it saw.
type taskWatcher struct {
	t      *testing.T
	stream dispatchv1.DispatchService_WatchTaskClient
	// states are the task states seen, consecutive repeats folded.
	states []dispatchv1.TaskState
	// fix is the last courier position seen.
	fix *courierv1.LocationFix
}

// until reads updates until one carries the task in state want, and returns that update.
func (w *taskWatcher) until(want dispatchv1.TaskState) *dispatchv1.WatchTaskResponse {
	w.t.Helper()
	for {
		u, err := w.stream.Recv()
		if err != nil {
			w.t.Fatalf("WatchTask Recv waiting for %v (states so far %v): %v", want, w.states, err)
		}
		if u.GetCourierLocation() != nil {
			w.fix = u.GetCourierLocation()
		}
		st := u.GetTask().GetState()
		if u.GetTask() != nil && (len(w.states) == 0 || w.states[len(w.states)-1] != st) {
			w.states = append(w.states, st)
		}
		if st == want {
			return u
		}
	}
}

// at reports whether a location fix is at lat, lng.
func at(f *courierv1.LocationFix, lat, lng float64) bool {
	return f.GetLocation().GetLatitude() == lat && f.GetLocation().GetLongitude() == lng
}

// dispatchSetup is a running system with an admin, a customer and a courier who is AVAILABLE near the
// test's pickup.
type dispatchSetup struct {
	s               *system
	admin, customer session
	courierID       string
	courier         session
	dispatch        dispatchv1.DispatchServiceClient
	couriers        courierv1.CourierServiceClient
}

// newDispatchSetup starts the system and prepares its users; the courier has no session yet.
func newDispatchSetup(ctx context.Context, t *testing.T) *dispatchSetup {
	t.Helper()
	s := startWithAdmin(t)
	d := &dispatchSetup{s: s}
	d.admin = s.login(t, adminEmail, adminPassword)
	d.courierID, d.courier = registerCourier(t, s, d.admin.access, "rider@example.com")
	s.createUser(t, "", "carla@example.com", "carla's long password", "")
	d.customer = s.login(t, "carla@example.com", "carla's long password")
	conn := s.grpcConn(t, "")
	d.dispatch = dispatchv1.NewDispatchServiceClient(conn)
	d.couriers = courierv1.NewCourierServiceClient(conn)
	goAvailable(ctx, t, s, d.couriers, d.courierID, d.courier.access, courierLat, courierLng)
	return d
}

// TestDispatchAsNewUsers is issue 9's "done when", tried through the real binary as its users would: a
// courier holding a session is offered a task a customer creates over REST, accepts it, picks it up,
// uploads a photo and delivers; the customer's WatchTask shows each step with the courier's position and an
// ETA; ExplainAssignment says why that courier; the delivered task carries the proof, whose bytes the
// customer can download.
func TestDispatchAsNewUsers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := newDispatchSetup(ctx, t)
	s := d.s

	session := openSession(ctx, t, d.dispatch, d.courier.access, 0, 0)
	if st := session.started; st.GetCourierId() != d.courierID || st.GetSessionId() == "" || st.GetCursorEpoch() == 0 ||
		len(st.GetActiveTasks()) != 0 || len(st.GetOpenOffers()) != 0 || st.GetAcknowledgedCursor() != 0 {
		t.Fatalf("started = %v, want courier %s, a session id, an epoch, no tasks, no offers, nothing acknowledged", st, d.courierID)
	}

	task := createTaskREST(t, s, d.customer.access, "e2e-order-1")
	if task.GetCustomerId() != d.customer.userID {
		t.Errorf("created task's customer = %q, want the caller %q", task.GetCustomerId(), d.customer.userID)
	}
	watchCtx, stopWatch := context.WithCancel(bearer(ctx, d.customer.access))
	defer stopWatch()
	ws, err := d.dispatch.WatchTask(watchCtx, &dispatchv1.WatchTaskRequest{Id: task.GetId()})
	if err != nil {
		t.Fatalf("WatchTask as the customer: %v", err)
	}
	watch := &taskWatcher{t: t, stream: ws}

	offer, cursor := session.nextOffer()
	checkOffer(t, offer, task.GetId(), d.courierID)
	if offer.GetTask().GetPickup().GetAddress() != "Rosenthaler Str. 40, Berlin" {
		t.Errorf("offered task's pickup address = %q, want the task's", offer.GetTask().GetPickup().GetAddress())
	}
	session.ack(cursor)
	held := session.succeed("accept-1", acceptCmd(offer.GetOffer().GetId()), dispatchv1.TaskState_TASK_STATE_ASSIGNED)
	if held.GetCourierId() != d.courierID || held.GetId() != task.GetId() {
		t.Fatalf("accepted task = %v, want task %s held by %s", held, task.GetId(), d.courierID)
	}

	u := watch.until(dispatchv1.TaskState_TASK_STATE_ASSIGNED)
	if u.GetTask().GetCourierId() != d.courierID {
		t.Errorf("WatchTask ASSIGNED update's courier = %q, want %q", u.GetTask().GetCourierId(), d.courierID)
	}
	if !at(u.GetCourierLocation(), courierLat, courierLng) {
		t.Errorf("WatchTask ASSIGNED update's courier location = %v, want the courier's fix (%v, %v)", u.GetCourierLocation(), courierLat, courierLng)
	}
	if e := u.GetEta(); e.GetPickupTime() == nil || e.GetDropoffTime() == nil || e.GetComputeTime() == nil || e.GetDegraded() ||
		!e.GetDropoffTime().AsTime().After(e.GetPickupTime().AsTime()) {
		t.Errorf("WatchTask ASSIGNED update's ETA = %v, want pickup before dropoff, a compute time, not degraded (route is up)", e)
	}

	// The courier rides to the pickup and collects the parcel; the customer can no longer cancel.
	moveTo(ctx, t, d.couriers, d.courierID, d.courier.access, pickupLat, pickupLng, time.Now())
	session.succeed("pickup-1", pickupCmd(task.GetId()), dispatchv1.TaskState_TASK_STATE_PICKED_UP)
	u = watch.until(dispatchv1.TaskState_TASK_STATE_PICKED_UP)
	if !at(watch.fix, pickupLat, pickupLng) {
		t.Errorf("WatchTask courier location after the pickup = %v, want the fix at the pickup (%v, %v)", watch.fix, pickupLat, pickupLng)
	}
	if e := u.GetEta(); e.GetPickupTime() != nil || e.GetDropoffTime() == nil || e.GetDegraded() {
		t.Errorf("WatchTask PICKED_UP update's ETA = %v, want a dropoff time only, not degraded", e)
	}
	code, body := s.restProto(t, http.MethodPost, "/v1/tasks/"+task.GetId()+":cancel", d.customer.access,
		`{"reason": "CANCEL_REASON_CUSTOMER_REQUEST"}`, nil)
	if code != http.StatusBadRequest || errStatus(body) != "FAILED_PRECONDITION" {
		t.Errorf("cancel after the pickup = %d %v, want 400 FAILED_PRECONDITION", code, body)
	}

	img := photo(t)
	up := uploadPhoto(ctx, t, d.dispatch, d.courier.access, task.GetId(), img)
	delivered := session.succeed("deliver-1", deliverCmd(task.GetId(), up.GetId()), dispatchv1.TaskState_TASK_STATE_DELIVERED)
	if len(delivered.GetProofs()) != 1 || delivered.GetProofs()[0].GetUploadId() != up.GetId() {
		t.Errorf("delivered task's proofs = %v, want the upload %s", delivered.GetProofs(), up.GetId())
	}

	watch.until(dispatchv1.TaskState_TASK_STATE_DELIVERED)
	if u, err := ws.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("WatchTask after DELIVERED = %v, %v; want the stream to end with OK", u, err)
	}
	checkStates(t, watch.states)

	var expl dispatchv1.AssignmentExplanation
	code, body = s.restProto(t, http.MethodGet, "/v1/tasks/"+task.GetId()+"/explanation", d.admin.access, "", &expl)
	if code != http.StatusOK {
		t.Fatalf("GET explanation as admin = %d %v, want 200", code, body)
	}
	if expl.GetTaskId() != task.GetId() || expl.GetTaskState() != dispatchv1.TaskState_TASK_STATE_DELIVERED || len(expl.GetDecisions()) != 1 {
		t.Fatalf("explanation = %v, want one decision for the DELIVERED task %s", &expl, task.GetId())
	}
	dec := expl.GetDecisions()[0]
	if dec.GetWinnerCourierId() != d.courierID || dec.GetOutcome() != dispatchv1.DecisionOutcome_DECISION_OUTCOME_OFFERED ||
		dec.GetTrigger() != dispatchv1.DecisionTrigger_DECISION_TRIGGER_AUTOMATIC || dec.GetDegraded() || dec.GetRationale() == "" ||
		len(dec.GetCandidates()) != 1 {
		t.Fatalf("decision = %v, want an automatic, not degraded OFFERED decision won by %s with a rationale and one candidate", dec, d.courierID)
	}
	c := dec.GetCandidates()[0]
	if c.GetCourierId() != d.courierID || c.GetRank() != 1 || c.GetScore().GetTotalScore() <= 0 || c.GetExclusionReason() != dispatchv1.ExclusionReason_EXCLUSION_REASON_UNSPECIFIED ||
		c.GetOfferId() != offer.GetOffer().GetId() || c.GetOfferState() != dispatchv1.OfferState_OFFER_STATE_ACCEPTED ||
		c.GetTransportMode() != geov1.TransportMode_TRANSPORT_MODE_BICYCLE || c.GetScore().GetPickupEta().AsDuration() <= 0 {
		t.Errorf("candidate = %v, want %s ranked 1 with a positive score and pickup ETA, a bicycle, and its accepted offer %s", c, d.courierID, offer.GetOffer().GetId())
	}
	// The pickup is about 475 m from the courier as the crow flies; a road is longer, but not by half.
	if sc := c.GetScore(); sc.GetActiveTasks() != 0 || sc.GetCapacity() != 2 || sc.GetPickupDistanceMeters() < 470 || sc.GetPickupDistanceMeters() > 475*1.5 ||
		sc.GetLoadScore() != dec.GetWeights().GetLoad() {
		t.Errorf("candidate's score = %v, want no active task of 2, a pickup distance of 470 to 713 m and the full load score %v", sc, dec.GetWeights().GetLoad())
	}

	var got dispatchv1.Task
	code, body = s.restProto(t, http.MethodGet, "/v1/tasks/"+task.GetId(), d.customer.access, "", &got)
	if code != http.StatusOK {
		t.Fatalf("GET task as the customer = %d %v, want 200", code, body)
	}
	if got.GetState() != dispatchv1.TaskState_TASK_STATE_DELIVERED || got.GetCourierId() != d.courierID || got.GetDeliverTime() == nil ||
		len(got.GetProofs()) != 1 {
		t.Fatalf("GET task as the customer = %v, want DELIVERED by %s with a deliver time and one proof", &got, d.courierID)
	}
	if p := got.GetProofs()[0]; p.GetUploadId() != up.GetId() || p.GetKind() != dispatchv1.ProofKind_PROOF_KIND_PHOTO ||
		p.GetContentType() != "image/png" || p.GetStage() != dispatchv1.TaskStage_TASK_STAGE_DROPOFF || p.GetSha256() != up.GetSha256() ||
		p.GetSizeBytes() != int64(len(img)) {
		t.Errorf("proof = %v, want the dropoff PNG photo %s of %d bytes", p, up.GetId(), len(img))
	}

	req, err := http.NewRequest(http.MethodGet, "http://"+s.HTTP+"/v1/tasks/"+task.GetId()+"/proofs/"+up.GetId()+"/content", http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.customer.access)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET proof content: %v", err)
	}
	content, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read proof content: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" || !bytes.Equal(content, img) {
		t.Errorf("GET proof content as the customer = %d, Content-Type %q, %d bytes; want 200, image/png and the %d bytes uploaded",
			resp.StatusCode, resp.Header.Get("Content-Type"), len(content), len(img))
	}
}

// checkStates checks the states a WatchTask saw: in the lifecycle's order, starting PENDING or OFFERED
// and going through ASSIGNED, PICKED_UP and DELIVERED (a watcher may miss a short OFFERED, as coalescing
// allows, but none of the held states, because the test waits for each before the next command).
func checkStates(t *testing.T, seen []dispatchv1.TaskState) {
	t.Helper()
	order := []dispatchv1.TaskState{
		dispatchv1.TaskState_TASK_STATE_PENDING, dispatchv1.TaskState_TASK_STATE_OFFERED, dispatchv1.TaskState_TASK_STATE_ASSIGNED,
		dispatchv1.TaskState_TASK_STATE_PICKED_UP, dispatchv1.TaskState_TASK_STATE_DELIVERED,
	}
	var ranks []int
	for _, st := range seen {
		ranks = append(ranks, slices.Index(order, st))
	}
	ok := len(ranks) >= 3 && ranks[0] >= 0 && ranks[0] <= 1 && slices.IsSorted(ranks) && !slices.Contains(ranks, -1) &&
		slices.Equal(ranks[len(ranks)-3:], []int{2, 3, 4})
	if !ok {
		t.Errorf("WatchTask states = %v, want PENDING or OFFERED, then ASSIGNED, PICKED_UP and DELIVERED in order", seen)
	}
}

// TestDispatchErrorsThroughTheStack provokes a sample of dispatch's documented errors through the gateway
// and the gRPC server: another customer's task is NOT_FOUND, a courier may not create tasks, a malformed
// page token is INVALID_ARGUMENT, a session must open with hello, and a second session of a courier ends the
// first with ABORTED after a SESSION_REPLACED drain.
func TestDispatchErrorsThroughTheStack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := newDispatchSetup(ctx, t)
	s := d.s
	task := createTaskREST(t, s, d.customer.access, "e2e-errors-1")

	s.createUser(t, "", "eve@example.com", "eve's long password!", "")
	eve := s.login(t, "eve@example.com", "eve's long password!")
	for _, c := range []struct {
		name, method, path, token, body string
		code                            int
		status                          string
	}{
		{"another customer's task", http.MethodGet, "/v1/tasks/" + task.GetId(), eve.access, "", http.StatusNotFound, "NOT_FOUND"},
		{"a task created by a courier", http.MethodPost, "/v1/tasks", d.courier.access, protojson.Format(taskRequest("by-courier")), http.StatusForbidden, "PERMISSION_DENIED"},
		{"a malformed page token", http.MethodGet, "/v1/tasks?pageToken=not-a-token", d.customer.access, "", http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"an unknown task", http.MethodGet, "/v1/tasks/00000000-0000-7000-8000-000000000000", d.admin.access, "", http.StatusNotFound, "NOT_FOUND"},
		{"an explanation asked by a customer", http.MethodGet, "/v1/tasks/" + task.GetId() + "/explanation", d.customer.access, "", http.StatusForbidden, "PERMISSION_DENIED"},
		{"no credentials", http.MethodGet, "/v1/tasks/" + task.GetId(), "", "", http.StatusUnauthorized, "UNAUTHENTICATED"},
		{"an admin's task for an unknown customer", http.MethodPost, "/v1/tasks", d.admin.access, protojson.Format(forCustomer(taskRequest("for-nobody"), "00000000-0000-7000-8000-000000000000")), http.StatusBadRequest, "FAILED_PRECONDITION"},
		{"an admin's task for a courier", http.MethodPost, "/v1/tasks", d.admin.access, protojson.Format(forCustomer(taskRequest("for-courier"), d.courier.userID)), http.StatusBadRequest, "FAILED_PRECONDITION"},
		{"an admin's task for an admin", http.MethodPost, "/v1/tasks", d.admin.access, protojson.Format(forCustomer(taskRequest("for-admin"), d.admin.userID)), http.StatusBadRequest, "FAILED_PRECONDITION"},
	} {
		code, _, body := s.rest(t, c.method, c.path, c.token, c.body)
		if code != c.code || errStatus(body) != c.status {
			t.Errorf("%s: %s %s = %d %v, want %d %s", c.name, c.method, c.path, code, body, c.code, c.status)
		}
	}

	// An admin creates tasks for active customers.
	forEve := &dispatchv1.Task{}
	if code, body := s.restProto(t, http.MethodPost, "/v1/tasks", d.admin.access, protojson.Format(forCustomer(taskRequest("for-eve"), eve.userID)), forEve); code != http.StatusCreated || forEve.GetCustomerId() != eve.userID {
		t.Errorf("an admin's task for Eve = %d %v, want 201 with customer %s", code, body, eve.userID)
	}

	// A session must open with hello.
	bad, err := d.dispatch.StreamAssignments(bearer(ctx, d.courier.access))
	if err != nil {
		t.Fatalf("StreamAssignments: %v", err)
	}
	if err := bad.Send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Ack{Ack: &dispatchv1.Acknowledge{Cursor: 1}}}); err != nil {
		t.Fatalf("send ack first: %v", err)
	}
	if msg, err := bad.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("StreamAssignments opened with an ack = %v, %v; want code InvalidArgument", msg, err)
	}

	// A second session replaces the first: drain SESSION_REPLACED, then ABORTED.
	first := openSession(ctx, t, d.dispatch, d.courier.access, 0, 0)
	second := openSession(ctx, t, d.dispatch, d.courier.access, 0, 0)
	if first.started.GetSessionId() == second.started.GetSessionId() {
		t.Errorf("two sessions share the id %s", first.started.GetSessionId())
	}
	var drain *dispatchv1.Drain
	for drain == nil {
		msg := first.recv()
		// The task created above may be offered to the first session before it is replaced.
		if msg.GetOffer() != nil {
			continue
		}
		drain = msg.GetDrain()
		if drain == nil || msg.GetCursor() != 0 {
			t.Fatalf("replaced session received %v, want a drain with cursor 0", msg)
		}
	}
	if drain.GetCode() != dispatchv1.DrainReason_DRAIN_REASON_SESSION_REPLACED {
		t.Errorf("replaced session's drain = %v, want code SESSION_REPLACED", drain)
	}
	if msg, err := first.stream.Recv(); status.Code(err) != codes.Aborted {
		t.Errorf("replaced session after its drain = %v, %v; want code Aborted", msg, err)
	}
	if second.started.GetCourierId() != d.courierID {
		t.Errorf("second session's courier = %q, want %q", second.started.GetCourierId(), d.courierID)
	}
}

// TestDispatchReplicasOnPostgreSQL runs dispatch as two processes on one PostgreSQL database (issue 9's
// "more than one replica"), beside a process serving identity, courier, route and the gateway, each with
// its own data directory and the shared development CA, peers by static address. A task created through
// replica 1 is offered to the courier whose session is on replica 2, and the acceptance made there is
// seen by a WatchTask on replica 1. Replica 2 then stops with an offer delivered but not acknowledged: the
// courier reconnects to replica 1 with its cursor and the offer is delivered again, and accepted there.
func TestDispatchReplicasOnPostgreSQL(t *testing.T) {
	url := databasetest.PostgresURL(t)
	dataDir := t.TempDir()
	core := startEnv(t, dataDir, map[string]string{"LASTMILE_ADMIN_EMAIL": adminEmail, "LASTMILE_ADMIN_PASSWORD": adminPassword},
		"--target", "identity,courier,route,gateway", "--database-url", url)
	replica := func() *system {
		return startIn(t, sharedCA(t, dataDir), "--target", "dispatch", "--database-url", url,
			"--identity-addr", core.GRPC, "--courier-addr", core.GRPC, "--route-addr", core.GRPC,
			// Offers outlive the replica's stop below, so the replayed offer is still open.
			"--offer-timeout", "2m")
	}
	r1, r2 := replica(), replica()
	if r1.HTTP != "" || core.GRPC == "" {
		t.Fatalf("dispatch-only process serves HTTP at %q, or the core process serves no gRPC", r1.HTTP)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin := core.login(t, adminEmail, adminPassword)
	courierID, rider := registerCourier(t, core, admin.access, "pg-rider@example.com")
	core.createUser(t, "", "pg-carla@example.com", "carla's long password", "")
	customer := core.login(t, "pg-carla@example.com", "carla's long password")
	goAvailable(ctx, t, core, courierv1.NewCourierServiceClient(core.grpcConn(t, "")), courierID, rider.access, courierLat, courierLng)
	one := dispatchv1.NewDispatchServiceClient(r1.grpcConn(t, ""))
	two := dispatchv1.NewDispatchServiceClient(r2.grpcConn(t, ""))

	oldCtx, dropOld := context.WithCancel(ctx)
	defer dropOld()
	old := openSession(oldCtx, t, two, rider.access, 0, 0)
	epoch := old.started.GetCursorEpoch()

	task, err := one.CreateTask(bearer(ctx, customer.access), taskRequest("pg-order-1"))
	if err != nil || task.GetState() != dispatchv1.TaskState_TASK_STATE_PENDING {
		t.Fatalf("CreateTask on replica 1 = %v, %v; want a PENDING task", task, err)
	}
	ws, err := one.WatchTask(bearer(ctx, customer.access), &dispatchv1.WatchTaskRequest{Id: task.GetId()})
	if err != nil {
		t.Fatalf("WatchTask on replica 1: %v", err)
	}
	watch := &taskWatcher{t: t, stream: ws}

	offer, first := old.nextOffer()
	checkOffer(t, offer, task.GetId(), courierID)
	old.ack(first)
	old.succeed("pg-accept-1", acceptCmd(offer.GetOffer().GetId()), dispatchv1.TaskState_TASK_STATE_ASSIGNED)
	if u := watch.until(dispatchv1.TaskState_TASK_STATE_ASSIGNED); u.GetTask().GetCourierId() != courierID {
		t.Errorf("replica 1's WatchTask ASSIGNED update = %v, want the task held by %s", u, courierID)
	}

	// A second task, offered on replica 2's session and not acknowledged there.
	task2, err := one.CreateTask(bearer(ctx, customer.access), taskRequest("pg-order-2"))
	if err != nil {
		t.Fatalf("CreateTask 2 on replica 1: %v", err)
	}
	offer2, second := old.nextOffer()
	checkOffer(t, offer2, task2.GetId(), courierID)
	if second <= first {
		t.Fatalf("second offer's cursor %d is not above the first's %d", second, first)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- r2.stop() }()
	msg := old.recv()
	if msg.GetDrain().GetCode() != dispatchv1.DrainReason_DRAIN_REASON_SERVER_SHUTDOWN || msg.GetCursor() != 0 {
		t.Fatalf("session on the stopping replica received %v, want a SERVER_SHUTDOWN drain", msg)
	}
	dropOld()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("replica 2 stopped with %v, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("replica 2 did not stop")
	}

	again := openSession(ctx, t, one, rider.access, first, epoch)
	st := again.started
	if st.GetAcknowledgedCursor() != first || st.GetCursorEpoch() != epoch || len(st.GetActiveTasks()) != 1 ||
		st.GetActiveTasks()[0].GetId() != task.GetId() || len(st.GetOpenOffers()) != 1 ||
		st.GetOpenOffers()[0].GetOffer().GetId() != offer2.GetOffer().GetId() || st.GetSnapshotCursor() < second {
		t.Fatalf("started on replica 1 = %v, want acknowledged cursor %d, epoch %d, task %s held, offer %s open, snapshot cursor >= %d",
			st, first, epoch, task.GetId(), offer2.GetOffer().GetId(), second)
	}
	replayed, cursor := again.nextOffer()
	if cursor != second || replayed.GetOffer().GetId() != offer2.GetOffer().GetId() {
		t.Fatalf("replayed delivery = cursor %d offer %v, want the unacknowledged offer %s at cursor %d", cursor, replayed.GetOffer(), offer2.GetOffer().GetId(), second)
	}
	again.ack(cursor)
	again.succeed("pg-accept-2", acceptCmd(offer2.GetOffer().GetId()), dispatchv1.TaskState_TASK_STATE_ASSIGNED)
	got, err := one.GetTask(bearer(ctx, customer.access), &dispatchv1.GetTaskRequest{Id: task2.GetId()})
	if err != nil || got.GetState() != dispatchv1.TaskState_TASK_STATE_ASSIGNED || got.GetCourierId() != courierID {
		t.Errorf("task 2 on replica 1 after the accept = %v, %v; want ASSIGNED to %s", got, err, courierID)
	}
}

// TestDispatchOpenTasksPerCustomer: with --dispatch-max-open-tasks 2, a customer's third open task is
// 429 RESOURCE_EXHAUSTED over REST, a repeated request still answers its task, and cancelling one makes
// room again.
func TestDispatchOpenTasksPerCustomer(t *testing.T) {
	s := startWithAdmin(t, "--dispatch-max-open-tasks", "2")
	s.createUser(t, "", "olga@example.com", "olga's long password", "")
	olga := s.login(t, "olga@example.com", "olga's long password")
	first := createTaskREST(t, s, olga.access, "open-1")
	createTaskREST(t, s, olga.access, "open-2")

	code, _, body := s.rest(t, http.MethodPost, "/v1/tasks", olga.access, protojson.Format(taskRequest("open-3")))
	want := "customer " + olga.userID + " already has 2 open tasks, the most allowed: wait for some to finish, or cancel some"
	if code != http.StatusTooManyRequests || errStatus(body) != "RESOURCE_EXHAUSTED" || str(body, "error", "message") != want {
		t.Fatalf("third open task = %d %v, want 429 RESOURCE_EXHAUSTED %q", code, body, want)
	}
	again := &dispatchv1.Task{}
	if code, body := s.restProto(t, http.MethodPost, "/v1/tasks", olga.access, protojson.Format(taskRequest("open-1")), again); code != http.StatusOK && code != http.StatusCreated || again.GetId() != first.GetId() {
		t.Fatalf("repeated request at the cap = %d %v, want task %s", code, body, first.GetId())
	}
	if code, _, body := s.rest(t, http.MethodPost, "/v1/tasks/"+first.GetId()+":cancel", olga.access, `{"reason":"CANCEL_REASON_CUSTOMER_REQUEST"}`); code != http.StatusOK {
		t.Fatalf("cancel = %d %v", code, body)
	}
	createTaskREST(t, s, olga.access, "open-3")
}
