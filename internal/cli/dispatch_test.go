package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
)

// restClient calls the REST gateway of a running serve.
type restClient struct {
	t    *testing.T
	base string
}

// call sends body as JSON (none when nil) with token, wants 200 (201 for a create) and returns the decoded
// answer.
func (c restClient) call(method, path, token string, body any) map[string]any {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	want := http.StatusOK
	if method == http.MethodPost && (path == "/v1/users" || path == "/v1/couriers" || path == "/v1/tasks") {
		want = http.StatusCreated
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != want {
		c.t.Fatalf("%s %s = %d %s (%v)", method, path, resp.StatusCode, out, err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(out, &m); err != nil {
		c.t.Fatalf("%s %s: %v in %s", method, path, err, out)
	}
	return m
}

const e2ePassword = "correct horse battery staple"

func (c restClient) login(email string) string {
	c.t.Helper()
	return c.call(http.MethodPost, "/v1/auth:login", "", map[string]any{"email": email, "password": e2ePassword})["accessToken"].(string)
}

// TestDispatchEndToEnd runs the whole binary (every service, mTLS, the gateway) and delivers a task as
// a customer, a courier app and a dashboard would: the courier reports a position and opens a session;
// the customer creates a task over REST and watches it; the task is offered over the session, accepted,
// picked up and delivered with a photo uploaded in chunks; the watch sees each step, ExplainAssignment
// names the courier and the claim reaches the courier service.
func TestDispatchEndToEnd(t *testing.T) {
	dir := t.TempDir()
	r := startServe(t, map[string]string{"LASTMILE_ADMIN_PASSWORD": e2ePassword},
		"--target", "all", "--insecure=false", "--data-dir", dir, "--http-addr", "127.0.0.1:0")
	api := restClient{t: t, base: "http://" + r.HTTP}
	admin := api.login("admin@lastmile.local")
	api.call(http.MethodPost, "/v1/users", admin, map[string]any{"email": "cu@example.com", "password": e2ePassword, "displayName": "Cu"})
	cy := api.call(http.MethodPost, "/v1/users", admin, map[string]any{"email": "cy@example.com", "password": e2ePassword, "displayName": "Cy", "role": "ROLE_COURIER"})["id"].(string)
	courierID := api.call(http.MethodPost, "/v1/couriers", admin, map[string]any{"userId": cy, "transportMode": "TRANSPORT_MODE_BICYCLE", "capacity": 2})["id"].(string)
	cyToken, cuToken := api.login("cy@example.com"), api.login("cu@example.com")
	api.call(http.MethodPost, "/v1/couriers/"+courierID+":setStatus", cyToken, map[string]any{"status": "COURIER_STATUS_AVAILABLE"})

	ca, err := os.ReadFile(filepath.Join(dir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	conn, err := grpc.NewClient(r.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	as := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}

	loc, err := courierv1.NewCourierServiceClient(conn).ReportLocations(as(cyToken))
	if err != nil {
		t.Fatal(err)
	}
	fix := &courierv1.LocationFix{Location: &geov1.LatLng{Latitude: 52.521, Longitude: 13.405}, RecordedAt: timestamppb.Now(), AccuracyMeters: 5}
	if err := loc.Send(&courierv1.ReportLocationsRequest{CourierId: courierID, Fixes: []*courierv1.LocationFix{fix}}); err != nil {
		t.Fatal(err)
	}
	if res, err := loc.CloseAndRecv(); err != nil || res.GetAcceptedCount() != 1 {
		t.Fatalf("ReportLocations = %v, %v", res, err)
	}

	dispatch := dispatchv1.NewDispatchServiceClient(conn)
	session, err := dispatch.StreamAssignments(as(cyToken))
	if err != nil {
		t.Fatal(err)
	}
	send := func(m *dispatchv1.StreamAssignmentsRequest) {
		t.Helper()
		if err := session.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Hello{Hello: &dispatchv1.SessionHello{AppVersion: "e2e"}}})
	if m, err := session.Recv(); err != nil || m.GetStarted().GetCourierId() != courierID {
		t.Fatalf("session started = %v, %v", m, err)
	}

	task := api.call(http.MethodPost, "/v1/tasks", cuToken, map[string]any{"requestId": "order-1",
		"pickup":            map[string]any{"location": map[string]any{"latitude": 52.52, "longitude": 13.405}, "address": "Alexanderplatz 1"},
		"dropoff":           map[string]any{"location": map[string]any{"latitude": 52.50, "longitude": 13.42}, "address": "Oranienstr 2"},
		"proofRequirements": []any{map[string]any{"kind": "PROOF_KIND_PHOTO", "stage": "TASK_STAGE_DROPOFF", "policy": "PROOF_POLICY_REQUIRED"}}})
	taskID := task["id"].(string)
	watch, err := dispatch.WatchTask(as(cuToken), &dispatchv1.WatchTaskRequest{Id: taskID})
	if err != nil {
		t.Fatal(err)
	}
	watched := make(chan []dispatchv1.TaskState, 1)
	go func() {
		var states []dispatchv1.TaskState
		defer func() { watched <- states }()
		for {
			m, err := watch.Recv()
			if err != nil {
				return // OK after the final state
			}
			if s := m.GetTask().GetState(); s != dispatchv1.TaskState_TASK_STATE_UNSPECIFIED && (len(states) == 0 || states[len(states)-1] != s) {
				states = append(states, s)
			}
		}
	}()

	m, err := session.Recv()
	if err != nil || m.GetOffer().GetTask().GetId() != taskID || m.GetCursor() <= 0 || m.GetServerTime() == nil {
		t.Fatalf("offer = %v, %v", m, err)
	}
	send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Ack{Ack: &dispatchv1.Acknowledge{Cursor: m.GetCursor()}}})
	command := func(id string, req *dispatchv1.StreamAssignmentsRequest) *dispatchv1.Task {
		t.Helper()
		req.CommandId = id
		send(req)
		for {
			m, err := session.Recv()
			if err != nil {
				t.Fatalf("command %s: %v", id, err)
			}
			if r := m.GetCommandResult(); r != nil {
				if r.GetError() != nil || r.GetCommandId() != id {
					t.Fatalf("command %s = %v", id, r)
				}
				return r.GetTask()
			}
		}
	}
	offerID := m.GetOffer().GetOffer().GetId()
	if got := command("accept", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{Accept: &dispatchv1.AcceptOffer{OfferId: offerID}}}); got.GetState() != dispatchv1.TaskState_TASK_STATE_ASSIGNED {
		t.Fatalf("accept = %v", got)
	}
	if got := command("pickup", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{PickedUp: &dispatchv1.ConfirmPickup{TaskId: taskID}}}); got.GetState() != dispatchv1.TaskState_TASK_STATE_PICKED_UP {
		t.Fatalf("picked_up = %v", got)
	}

	// A photo, in two chunks.
	photo := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("lastmile"), 4096)...)
	sum := sha256.Sum256(photo)
	up, err := dispatch.UploadProof(as(cyToken))
	if err != nil {
		t.Fatal(err)
	}
	uploadMsgs := []*dispatchv1.UploadProofRequest{
		{Kind: &dispatchv1.UploadProofRequest_Start{Start: &dispatchv1.UploadStart{TaskId: taskID, Kind: dispatchv1.ProofKind_PROOF_KIND_PHOTO,
			ContentType: "image/png", SizeBytes: int64(len(photo)), Sha256: hex.EncodeToString(sum[:])}}},
		{Kind: &dispatchv1.UploadProofRequest_Chunk{Chunk: &dispatchv1.UploadChunk{Offset: 0, Data: photo[:20000]}}},
		{Kind: &dispatchv1.UploadProofRequest_Chunk{Chunk: &dispatchv1.UploadChunk{Offset: 20000, Data: photo[20000:]}}},
		{Kind: &dispatchv1.UploadProofRequest_Finish{Finish: &dispatchv1.UploadFinish{}}},
	}
	var upload *dispatchv1.Upload
	for _, msg := range uploadMsgs {
		if err := up.Send(msg); err != nil {
			t.Fatal(err)
		}
		res, err := up.Recv()
		if err != nil {
			t.Fatalf("UploadProof: %v", err)
		}
		upload = res.GetUpload()
	}
	if upload.GetState() != dispatchv1.UploadState_UPLOAD_STATE_COMMITTED || upload.GetCommittedOffset() != int64(len(photo)) {
		t.Fatalf("upload = %v, want COMMITTED", upload)
	}
	got := command("deliver", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Delivered{Delivered: &dispatchv1.ConfirmDelivery{TaskId: taskID, ProofUploadIds: []string{upload.GetId()}}}})
	if got.GetState() != dispatchv1.TaskState_TASK_STATE_DELIVERED || len(got.GetProofs()) != 1 || got.GetProofs()[0].GetUploadId() != upload.GetId() {
		t.Fatalf("delivered = %v", got)
	}

	want := []dispatchv1.TaskState{dispatchv1.TaskState_TASK_STATE_PENDING, dispatchv1.TaskState_TASK_STATE_OFFERED, dispatchv1.TaskState_TASK_STATE_ASSIGNED,
		dispatchv1.TaskState_TASK_STATE_PICKED_UP, dispatchv1.TaskState_TASK_STATE_DELIVERED}
	// A watcher slower than the changes may see only the latest of several (the contract allows it): the
	// states seen are the steps in order, from the first to the last.
	states := <-watched
	inOrder := len(states) > 0 && states[0] == want[0] && states[len(states)-1] == want[len(want)-1]
	for i, j := 0, 0; inOrder && i < len(states); i++ {
		for j < len(want) && want[j] != states[i] {
			j++
		}
		inOrder = j < len(want)
	}
	if !inOrder {
		t.Errorf("WatchTask saw %v, want the steps %v in order, from the first to the last", states, want)
	}
	t.Logf("WatchTask saw %v", states)

	ex := api.call(http.MethodGet, "/v1/tasks/"+taskID+"/explanation", admin, nil)
	decisions, _ := ex["decisions"].([]any)
	if len(decisions) != 1 || decisions[0].(map[string]any)["winnerCourierId"] != courierID || decisions[0].(map[string]any)["outcome"] != "DECISION_OUTCOME_OFFERED" {
		t.Errorf("explanation = %v, want one decision offering the task to %s", ex, courierID)
	}
	// The bytes, as the customer reads them through the gateway.
	req, _ := http.NewRequest(http.MethodGet, api.base+"/v1/tasks/"+taskID+"/proofs/"+upload.GetId()+"/content", nil)
	req.Header.Set("Authorization", "Bearer "+cuToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/png") || len(body) == 0 {
		t.Errorf("GET proof content = %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	// The metrics count the delivered task.
	status, metrics := get(t, "http://"+r.Admin+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics = %d", status)
	}
	for _, line := range []string{`lastmile_dispatch_tasks{state="delivered"} 1`, "lastmile_dispatch_offers_sent_total 1", "lastmile_dispatch_courier_sessions 1",
		"lastmile_dispatch_job_queue_errors_total 0"} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
}
