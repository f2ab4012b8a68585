package gateway_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/gateway"
	"lastmile/internal/gateway/ssetest"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/grpcerr"
)

const (
	taskA     = "0198f4d5-7a58-7c3a-9d1e-0a1b2c3d4e51"
	taskB     = "0198f4d5-7a58-7c3a-9d1e-0a1b2c3d4e52"
	taskC     = "0198f4d5-7a58-7c3a-9d1e-0a1b2c3d4e53"
	missingID = "0198f4d5-7a58-7c3a-9d1e-0a1b2c3d4e59"
)

// watchCall is one upstream call the fake dispatch service received.
type watchCall struct {
	tasksReq *dispatchv1.WatchTasksRequest
	taskReq  *dispatchv1.WatchTaskRequest
	md       metadata.MD
	done     <-chan struct{} // closed when the call's context ends
}

// fakeDispatch serves WatchTasks and WatchTask. Every call is announced on calls; WatchTasks sends a
// snapshot of taskA, then whatever the test puts on live. WatchTask sends a snapshot of the task, then
// live messages, and ends with OK on a nil one. WatchTask of missingID is NOT_FOUND; without an
// authorization header both are UNAUTHENTICATED, as the services' interceptors answer.
type fakeDispatch struct {
	dispatchv1.UnimplementedDispatchServiceServer
	calls    chan watchCall
	live     chan *dispatchv1.WatchTasksResponse
	taskLive chan *dispatchv1.WatchTaskResponse
	fail     chan error // WatchTasks ends with the error sent here (nil: a clean end)
	flood    bool       // WatchTasks sends large messages as fast as it can
	// snapshotTime, when set, is the update time of the snapshot's task.
	snapshotTime time.Time
	floodNote    string
}

func newFakeDispatch() *fakeDispatch {
	return &fakeDispatch{
		calls:    make(chan watchCall, 16),
		live:     make(chan *dispatchv1.WatchTasksResponse),
		taskLive: make(chan *dispatchv1.WatchTaskResponse),
		fail:     make(chan error),
	}
}

func authenticated(ctx context.Context) (metadata.MD, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get("authorization")) == 0 {
		return md, status.Error(codes.Unauthenticated, "authentication required")
	}
	return md, nil
}

func (f *fakeDispatch) WatchTasks(req *dispatchv1.WatchTasksRequest, stream grpc.ServerStreamingServer[dispatchv1.WatchTasksResponse]) error {
	ctx := stream.Context()
	md, err := authenticated(ctx)
	if err != nil {
		return err
	}
	f.calls <- watchCall{tasksReq: req, md: md, done: ctx.Done()}
	if f.flood {
		for {
			if err := stream.Send(taskMsg(taskA, f.floodNote)); err != nil {
				return err
			}
		}
	}
	snapshot := taskMsg(taskA, "snapshot")
	if !f.snapshotTime.IsZero() {
		snapshot.GetTask().UpdateTime = timestamppb.New(f.snapshotTime)
	}
	for _, m := range []*dispatchv1.WatchTasksResponse{
		snapshot,
		{Kind: &dispatchv1.WatchTasksResponse_SnapshotComplete{SnapshotComplete: &dispatchv1.WatchTasksSnapshotComplete{TaskCount: 1}}},
	} {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	for {
		select {
		case m := <-f.live:
			if err := stream.Send(m); err != nil {
				return err
			}
		case err := <-f.fail:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *fakeDispatch) WatchTask(req *dispatchv1.WatchTaskRequest, stream grpc.ServerStreamingServer[dispatchv1.WatchTaskResponse]) error {
	ctx := stream.Context()
	md, err := authenticated(ctx)
	if err != nil {
		return err
	}
	if req.GetId() == missingID {
		return status.Error(codes.NotFound, "task not found")
	}
	f.calls <- watchCall{taskReq: req, md: md, done: ctx.Done()}
	if err := stream.Send(&dispatchv1.WatchTaskResponse{Task: &dispatchv1.Task{Id: req.GetId(), State: dispatchv1.TaskState_TASK_STATE_PENDING}}); err != nil {
		return err
	}
	for {
		select {
		case m := <-f.taskLive:
			if m == nil {
				return nil
			}
			if err := stream.Send(m); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func taskMsg(id, notes string) *dispatchv1.WatchTasksResponse {
	return &dispatchv1.WatchTasksResponse{Kind: &dispatchv1.WatchTasksResponse_Task{Task: &dispatchv1.Task{
		Id: id, State: dispatchv1.TaskState_TASK_STATE_PENDING, Notes: notes,
	}}}
}

// sseNow is the gateway's clock in the event tests: 2026-11-30 21:00 UTC, 1796072400000 in Unix ms, the
// time the ids of /v1/events start from.
var sseNow = time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)

// eventStack is a gateway in front of a fake dispatch service.
type eventStack struct {
	fake  *fakeDispatch
	gw    *gateway.Gateway
	srv   *httptest.Server
	close func()
}

// startEvents starts the stack; close (also a cleanup) stops everything, so that a test can check for
// goroutines left behind.
func startEvents(t *testing.T, fake *fakeDispatch, cfg gateway.Config) *eventStack {
	t.Helper()
	if cfg.Browser.Now == nil {
		cfg.Browser.Now = func() time.Time { return sseNow }
	}
	conn, stopGRPC := serveBufconn(t, func(s *grpc.Server) { dispatchv1.RegisterDispatchServiceServer(s, fake) })
	g, err := gateway.New(t.Context(), cfg, []gateway.Service{{
		Name: "lastmile.dispatch.v1.DispatchService", Conn: conn, Register: gateway.Routes(dispatchv1.RegisterDispatchServiceHandlerClient, dispatchv1.NewDispatchServiceClient),
	}})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	srv := httptest.NewServer(g.Handler())
	s := &eventStack{fake: fake, gw: g, srv: srv}
	var once bool
	s.close = func() {
		if once {
			return
		}
		once = true
		srv.CloseClientConnections()
		srv.Close()
		stopGRPC()
	}
	t.Cleanup(s.close)
	return s
}

// token is a JWT-shaped bearer token for subject sub (the fake checks no signature; the gateway reads sub
// for the per-user limit).
func token(sub string) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"` + sub + `"}`))
	return "eyJhbGciOiJub25lIn0." + payload + ".c2ln"
}

// sseEvent is one parsed event, or a comment.
type sseEvent = ssetest.Event

// eventReader reads an event stream.
type eventReader struct {
	*ssetest.Reader
	resp *http.Response
}

// openEvents sends GET path with header and returns the response; the caller checks the status.
func openEvents(t *testing.T, s *eventStack, path string, header http.Header) *eventReader {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.srv.URL+path, nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", path, err)
	}
	r := &eventReader{Reader: ssetest.NewReader(t, resp.Body, func() { cancel(); _ = resp.Body.Close() }, 10*time.Second), resp: resp}
	t.Cleanup(r.Close)
	return r
}

func bearer(sub string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token(sub)}}
}

func wantStreamHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status = %d %s, want 200", resp.StatusCode, body)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func waitDone(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the upstream call's context was not cancelled within 10s", what)
	}
}

func nextCall(t *testing.T, f *fakeDispatch) watchCall {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no upstream call within 10s")
		return watchCall{}
	}
}

func TestEventsInOrder(t *testing.T) {
	s := startEvents(t, newFakeDispatch(), gateway.Config{})
	r := openEvents(t, s, "/v1/events?states=TASK_STATE_PENDING&states=TASK_STATE_OFFERED&customerId="+taskC+"&view=TASK_VIEW_FULL",
		http.Header{"Authorization": {"Bearer " + token("u1")}, "X-Request-Id": {"req-1"}})
	wantStreamHeaders(t, r.resp)
	call := nextCall(t, s.fake)
	wantReq := &dispatchv1.WatchTasksRequest{
		States:     []dispatchv1.TaskState{dispatchv1.TaskState_TASK_STATE_PENDING, dispatchv1.TaskState_TASK_STATE_OFFERED},
		CustomerId: taskC, View: dispatchv1.TaskView_TASK_VIEW_FULL,
	}
	if diff := cmp.Diff(wantReq, call.tasksReq, protocmp.Transform()); diff != "" {
		t.Errorf("upstream request (-want +got):\n%s", diff)
	}
	if got := call.md.Get("authorization"); !cmp.Equal(got, []string{"Bearer " + token("u1")}) {
		t.Errorf("forwarded authorization = %q", got)
	}
	if got := call.md.Get("x-request-id"); !cmp.Equal(got, []string{"req-1"}) {
		t.Errorf("forwarded x-request-id = %q, want [req-1]", got)
	}
	// The client address, as grpc-gateway forwards it on the REST routes.
	if got := call.md.Get("x-forwarded-for"); !cmp.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("forwarded x-forwarded-for = %q, want [127.0.0.1]", got)
	}

	go func() {
		s.fake.live <- taskMsg(taskB, "")
		s.fake.live <- taskMsg(taskC, "")
	}()
	got := []sseEvent{r.Next(), r.Next(), r.Next(), r.Next(), r.Next(), r.Next()}
	want := []sseEvent{
		{Retry: "3000"},
		{ID: "0.1796072400000", Event: "open", Data: `{"resumed":false}`},
		{ID: "1.1796072400000", Event: "task", Data: `{"id":"` + taskA + `","state":"TASK_STATE_PENDING","notes":"snapshot"}`},
		{ID: "2.1796072400000", Event: "snapshotComplete", Data: `{"taskCount":1}`},
		{ID: "3.1796072400000", Event: "task", Data: `{"id":"` + taskB + `","state":"TASK_STATE_PENDING"}`},
		{ID: "4.1796072400000", Event: "task", Data: `{"id":"` + taskC + `","state":"TASK_STATE_PENDING"}`},
	}
	if diff := cmp.Diff(want, normalize(got)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// normalize re-renders each data line through encoding/json-independent compaction: protojson may put
// one or two spaces after separators (on purpose, to keep callers from depending on its bytes).
func normalize(evs []sseEvent) []sseEvent {
	out := make([]sseEvent, len(evs))
	for i, ev := range evs {
		ev.Data = strings.ReplaceAll(strings.ReplaceAll(ev.Data, ":  ", ":"), ": ", ":")
		ev.Data = strings.ReplaceAll(strings.ReplaceAll(ev.Data, ",  ", ","), ", ", ",")
		out[i] = ev
	}
	return out
}

// TestEventsWithSessionCookie: EventSource sends the session cookie, which becomes the bearer token.
func TestEventsWithSessionCookie(t *testing.T) {
	s := startEvents(t, newFakeDispatch(), gateway.Config{})
	r := openEvents(t, s, "/v1/events", http.Header{"Cookie": {"lm_access=" + token("u1") + "; lm_csrf=c"}})
	wantStreamHeaders(t, r.resp)
	call := nextCall(t, s.fake)
	if got := call.md.Get("authorization"); !cmp.Equal(got, []string{"Bearer " + token("u1")}) {
		t.Errorf("forwarded authorization = %q, want the cookie's token", got)
	}
	if got := call.md.Get("cookie"); len(got) != 0 {
		t.Errorf("cookie forwarded to the service: %q", got)
	}
}

func TestTaskEvents(t *testing.T) {
	s := startEvents(t, newFakeDispatch(), gateway.Config{})
	r := openEvents(t, s, "/v1/tasks/"+taskA+"/events", bearer("u1"))
	wantStreamHeaders(t, r.resp)
	call := nextCall(t, s.fake)
	if diff := cmp.Diff(&dispatchv1.WatchTaskRequest{Id: taskA}, call.taskReq, protocmp.Transform()); diff != "" {
		t.Errorf("upstream request (-want +got):\n%s", diff)
	}
	go func() {
		s.fake.taskLive <- &dispatchv1.WatchTaskResponse{Task: &dispatchv1.Task{Id: taskA, State: dispatchv1.TaskState_TASK_STATE_DELIVERED}}
		s.fake.taskLive <- nil
	}()
	got := []sseEvent{r.Next(), r.Next(), r.Next(), r.Next()}
	want := []sseEvent{
		{Retry: "3000"},
		{ID: "0", Event: "task", Data: `{"task":{"id":"` + taskA + `","state":"TASK_STATE_PENDING"}}`},
		{ID: "1", Event: "task", Data: `{"task":{"id":"` + taskA + `","state":"TASK_STATE_DELIVERED"}}`},
		{ID: "2", Event: "end", Data: `{}`},
	}
	if diff := cmp.Diff(want, normalize(got)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after end: read %v, want EOF (the server ends the response)", err)
	}
}

func TestEventsResumeAfterLastEventID(t *testing.T) {
	s := startEvents(t, newFakeDispatch(), gateway.Config{})
	for _, tc := range []struct {
		name   string
		path   string
		header http.Header
	}{
		{"header", "/v1/events", http.Header{"Last-Event-Id": {"41"}}},
		{"query", "/v1/events?lastEventId=41", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := bearer("u1")
			for k, v := range tc.header {
				h[k] = v
			}
			r := openEvents(t, s, tc.path, h)
			wantStreamHeaders(t, r.resp)
			nextCall(t, s.fake)
			got := []sseEvent{r.Next(), r.Next(), r.Next(), r.Next()}
			want := []sseEvent{
				{Retry: "3000"},
				{ID: "42.1796072400000", Event: "open", Data: `{"resumed":true}`},
				{ID: "43.1796072400000", Event: "task", Data: `{"id":"` + taskA + `","state":"TASK_STATE_PENDING","notes":"snapshot"}`},
				{ID: "44.1796072400000", Event: "snapshotComplete", Data: `{"taskCount":1}`},
			}
			if diff := cmp.Diff(want, normalize(got)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// taskAt is a task event of id updated at.
func taskAt(id string, state dispatchv1.TaskState, at time.Time) *dispatchv1.WatchTasksResponse {
	return &dispatchv1.WatchTasksResponse{Kind: &dispatchv1.WatchTasksResponse_Task{Task: &dispatchv1.Task{
		Id: id, State: state, UpdateTime: timestamppb.New(at),
	}}}
}

// TestEventsResumeWithTime: the ids of /v1/events carry the latest task update time sent (the stream's
// start before any, and the snapshot's only once it is complete), and a resume asks WatchTasks for the
// tasks finished since that time minus the margin, so that none finished while the browser was away is
// lost; ids without a time resume as before, and times beyond the window (or more than an hour ahead,
// which no server sent) are brought into it.
func TestEventsResumeWithTime(t *testing.T) {
	fake := newFakeDispatch()
	fake.snapshotTime = sseNow.Add(time.Minute) // 1796072460000
	s := startEvents(t, fake, gateway.Config{})
	r := openEvents(t, s, "/v1/events", bearer("u1"))
	if call := nextCall(t, fake); call.tasksReq.GetChangedSince() != nil {
		t.Errorf("first stream: changed_since = %v, want none", call.tasksReq.GetChangedSince().AsTime())
	}
	go func() {
		fake.live <- taskAt(taskB, dispatchv1.TaskState_TASK_STATE_DELIVERED, sseNow.Add(2*time.Minute))
		fake.live <- taskAt(taskC, dispatchv1.TaskState_TASK_STATE_PENDING, sseNow.Add(90*time.Second)) // older: no change
	}()
	if got := r.Next(); got.Retry != "3000" {
		t.Fatalf("first block = %+v, want the retry", got)
	}
	var got []string
	for range 5 {
		got = append(got, r.NextEvent().ID)
	}
	want := []string{
		"0.1796072400000", // open: the stream's start
		"1.1796072400000", // the snapshot's task: not yet, the snapshot is not complete
		"2.1796072460000", // snapshotComplete: the snapshot's latest update
		"3.1796072520000", // taskB
		"4.1796072520000", // taskC, updated before taskB
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	r.Close()

	for _, tc := range []struct {
		name      string
		lastID    string
		wantSince *timestamppb.Timestamp
		wantOpen  string
	}{
		{"with time", "4.1796072520000", timestamppb.New(sseNow.Add(2*time.Minute - 10*time.Second)), "5.1796072520000"},
		{"plain number", "41", nil, "42.1796072400000"},
		{"beyond the window", "7.1700000000000", timestamppb.New(sseNow.Add(-23*time.Hour - 10*time.Second)), "8.1795989600000"},
		{"in the future", "7.1796245200000", timestamppb.New(sseNow.Add(time.Hour - 10*time.Second)), "8.1796076000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := bearer("u1")
			h.Set("Last-Event-ID", tc.lastID)
			r := openEvents(t, s, "/v1/events", h)
			defer r.Close()
			call := nextCall(t, fake)
			if diff := cmp.Diff(tc.wantSince, call.tasksReq.GetChangedSince(), protocmp.Transform()); diff != "" {
				t.Errorf("changed_since (-want +got):\n%s", diff)
			}
			r.Next() // retry
			if got := r.NextEvent(); got.ID != tc.wantOpen || got.Event != "open" || got.Data != `{"resumed":true}` {
				t.Errorf("first event = %+v, want open %s resumed", got, tc.wantOpen)
			}
		})
	}
}

func TestEventRequestErrors(t *testing.T) {
	s := startEvents(t, newFakeDispatch(), gateway.Config{})
	for _, tc := range []struct {
		name       string
		path       string
		header     http.Header
		wantStatus int
		wantBody   map[string]any
	}{
		{"no credentials", "/v1/events", nil, http.StatusUnauthorized,
			errorJSON(401, "UNAUTHENTICATED", "authentication required")},
		{"task not visible", "/v1/tasks/" + missingID + "/events", bearer("u1"), http.StatusNotFound,
			errorJSON(404, "NOT_FOUND", "task not found")},
		{"unknown parameter", "/v1/events?color=red", bearer("u1"), http.StatusBadRequest,
			errorJSON(400, "INVALID_ARGUMENT", `unknown query parameter "color"`)},
		{"bad enum", "/v1/events?states=SHIPPED", bearer("u1"), http.StatusBadRequest, nil},
		{"id in query", "/v1/tasks/" + taskA + "/events?id=" + taskB, bearer("u1"), http.StatusBadRequest,
			errorJSON(400, "INVALID_ARGUMENT", "the task id is in the path: remove the id query parameter")},
		{"bad last event id", "/v1/events", http.Header{"Authorization": {"Bearer " + token("u1")}, "Last-Event-Id": {"abc"}}, http.StatusBadRequest,
			errorJSON(400, "INVALID_ARGUMENT", "Last-Event-ID must be an event id this server sent")},
		{"bad time in last event id", "/v1/events", http.Header{"Authorization": {"Bearer " + token("u1")}, "Last-Event-Id": {"4.x"}}, http.StatusBadRequest,
			errorJSON(400, "INVALID_ARGUMENT", "Last-Event-ID must be an event id this server sent")},
		{"zero time in last event id", "/v1/events", http.Header{"Authorization": {"Bearer " + token("u1")}, "Last-Event-Id": {"4.0"}}, http.StatusBadRequest,
			errorJSON(400, "INVALID_ARGUMENT", "Last-Event-ID must be an event id this server sent")},
		{"couriers not configured", "/v1/events?couriers=true", bearer("u1"), http.StatusServiceUnavailable,
			errorJSON(503, "UNAVAILABLE", "courier events are not available: the courier service is not configured")},
		{"bad couriers flag", "/v1/events?couriers=yes", bearer("u1"), http.StatusBadRequest,
			errorJSON(400, "INVALID_ARGUMENT", "couriers must be true or false")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, s.srv, http.MethodGet, tc.path, nil, tc.header)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d %s, want %d", resp.StatusCode, body, tc.wantStatus)
			}
			if tc.wantBody != nil {
				if diff := cmp.Diff(tc.wantBody, decode(t, body)); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			}
		})
	}
	resp, body := do(t, s.srv, http.MethodPost, "/v1/events", nil, bearer("u1"))
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, OPTIONS" {
		t.Errorf("POST /v1/events = %d (Allow %q) %s, want 405 with Allow: GET, OPTIONS", resp.StatusCode, resp.Header.Get("Allow"), body)
	}
	if diff := cmp.Diff(errorJSON(405, "INVALID_ARGUMENT", "method POST is not allowed on this route; allowed: GET, OPTIONS"), decode(t, body)); diff != "" {
		t.Errorf("POST /v1/events body (-want +got):\n%s", diff)
	}
	resp, body = do(t, s.srv, http.MethodOptions, "/v1/events", nil, nil)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Allow") != "GET, OPTIONS" || len(body) != 0 {
		t.Errorf("OPTIONS /v1/events = %d (Allow %q) %q, want 204 with Allow: GET, OPTIONS and no body", resp.StatusCode, resp.Header.Get("Allow"), body)
	}
}

// TestClientGoneClosesUpstream: when the browser goes away the upstream gRPC call is cancelled, the
// stream's slot is released and no goroutine is left behind.
func TestClientGoneClosesUpstream(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	s := startEvents(t, newFakeDispatch(), gateway.Config{Browser: gateway.BrowserConfig{MaxEventStreams: 1}})
	r := openEvents(t, s, "/v1/events", bearer("u1"))
	wantStreamHeaders(t, r.resp)
	call := nextCall(t, s.fake)
	r.NextEvent()
	r.Close()
	waitDone(t, call.done, "client closed")

	// The slot is free again (MaxEventStreams is 1): a new stream opens once the handler has returned.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := s.srv.Client().Do(mustRequest(t, s.srv.URL+"/v1/events", bearer("u1")))
		if err != nil {
			t.Fatalf("GET /v1/events: %v", err)
		}
		code := resp.StatusCode
		_ = resp.Body.Close()
		if code == http.StatusOK {
			waitDone(t, nextCall(t, s.fake).done, "second client closed")
			break
		}
		if code != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("second stream: status %d, want 200 once the first stream's slot is released", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.close()
	goleak.VerifyNone(t, ignore)
}

func mustRequest(t *testing.T, url string, h http.Header) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	req.Header = h
	return req
}

func TestHeartbeats(t *testing.T) {
	s := startEvents(t, newFakeDispatch(), gateway.Config{Browser: gateway.BrowserConfig{Heartbeat: 5 * time.Millisecond}})
	r := openEvents(t, s, "/v1/events", bearer("u1"))
	wantStreamHeaders(t, r.resp)
	nextCall(t, s.fake)
	for range 4 {
		r.Next() // retry, open, the snapshot task, snapshotComplete
	}
	for range 3 {
		if ev := r.Next(); ev != (sseEvent{Comment: "heartbeat"}) {
			t.Fatalf("idle stream sent %+v, want the heartbeat comment", ev)
		}
	}
}

func TestEventStreamLimits(t *testing.T) {
	s := startEvents(t, newFakeDispatch(), gateway.Config{Browser: gateway.BrowserConfig{MaxEventStreams: 3, MaxEventStreamsPerUser: 2}})
	for range 2 {
		wantStreamHeaders(t, openEvents(t, s, "/v1/events", bearer("u1")).resp)
		nextCall(t, s.fake)
	}
	resp, body := do(t, s.srv, http.MethodGet, "/v1/events", nil, bearer("u1"))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third stream of u1: %d %s, want 429", resp.StatusCode, body)
	}
	if diff := cmp.Diff(errorJSON(429, "RESOURCE_EXHAUSTED", "too many event streams are open for this user; close some"), decode(t, body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	<-s.fake.calls // the refused call was opened, then cancelled
	wantStreamHeaders(t, openEvents(t, s, "/v1/events", bearer("u2")).resp)
	nextCall(t, s.fake)
	resp, body = do(t, s.srv, http.MethodGet, "/v1/events", nil, bearer("u3"))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth stream: %d %s, want 429", resp.StatusCode, body)
	}
	if diff := cmp.Diff(errorJSON(429, "RESOURCE_EXHAUSTED", "too many event streams are open; retry later"), decode(t, body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
}

// TestEventStreamsKeepSlotsForStaff: the last quarter of --sse-max-streams (at most 64) is kept for
// dispatchers and admins, so that customers and share links from many addresses cannot shut the operations
// dashboards out; staff streams may also take the rest.
func TestEventStreamsKeepSlotsForStaff(t *testing.T) {
	s := startEvents(t, newFakeDispatch(), gateway.Config{Browser: gateway.BrowserConfig{MaxEventStreams: 8, MaxEventStreamsPerUser: 8}})
	for i := range 6 {
		wantStreamHeaders(t, openEvents(t, s, "/v1/events", bearer(fmt.Sprintf("customer-%d", i))).resp)
		nextCall(t, s.fake)
	}
	resp, body := do(t, s.srv, http.MethodGet, "/v1/events", nil, bearer("customer-6"))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("seventh stream, a customer's: %d %s, want 429 (two of eight are kept for staff)", resp.StatusCode, body)
	}
	if diff := cmp.Diff(errorJSON(429, "RESOURCE_EXHAUSTED", "too many event streams are open; retry later"), decode(t, body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	<-s.fake.calls // the refused call was opened, then cancelled
	for _, role := range []string{"dispatcher", "admin"} {
		wantStreamHeaders(t, openEvents(t, s, "/v1/events", bearerWithRoles(role+"-1", role)).resp)
		nextCall(t, s.fake)
	}
	resp, body = do(t, s.srv, http.MethodGet, "/v1/events", nil, bearerWithRoles("dispatcher-2", "dispatcher"))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("ninth stream, a dispatcher's: %d %s, want 429 (all eight open)", resp.StatusCode, body)
	}
}

// bearerWithRoles is bearer with an access token whose roles claim lists roles.
func bearerWithRoles(sub string, roles ...string) http.Header {
	claims, err := json.Marshal(map[string]any{"sub": sub, "roles": roles})
	if err != nil {
		panic(err)
	}
	return http.Header{"Authorization": {"Bearer eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln"}}
}

// TestStalledBrowser: a browser that stops reading has its stream closed after the write timeout, and
// with it the upstream call.
func TestStalledBrowser(t *testing.T) {
	fake := newFakeDispatch()
	fake.flood, fake.floodNote = true, strings.Repeat("x", 16<<10)
	s := startEvents(t, fake, gateway.Config{Browser: gateway.BrowserConfig{EventWriteTimeout: 50 * time.Millisecond}})
	r := openEvents(t, s, "/v1/events", bearer("u1"))
	wantStreamHeaders(t, r.resp)
	// Never read: the socket buffers fill, a write blocks past its deadline, the stream ends.
	waitDone(t, nextCall(t, fake).done, "stalled browser")
}

// TestShutdownEndsEventStreams: streams never end on their own, so shutdown ends them instead of waiting
// for its deadline.
func TestShutdownEndsEventStreams(t *testing.T) {
	fake := newFakeDispatch()
	s := startEvents(t, fake, gateway.Config{Addr: "127.0.0.1:0", ShutdownTimeout: time.Minute})
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	if err := s.gw.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { served <- s.gw.Serve(ctx) }()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+s.gw.Addr().String()+"/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = bearer("u1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/events: %v", err)
	}
	defer resp.Body.Close()
	wantStreamHeaders(t, resp)
	call := nextCall(t, fake)
	cancel()
	waitDone(t, call.done, "shutdown")
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve = %v, want nil (a clean shutdown, nothing cut off)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return within 20s of cancellation")
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Errorf("reading the ended stream: %v, want a clean end", err)
	}
}

// TestStreamOutlivesServerTimeouts: the server's read and write timeouts bound ordinary requests; an event
// stream replaces them with a deadline per write, so it keeps going long after them.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	fake := newFakeDispatch()
	s := startEvents(t, fake, gateway.Config{Addr: "127.0.0.1:0", ReadTimeout: 20 * time.Millisecond,
		WriteTimeout: 20 * time.Millisecond, Browser: gateway.BrowserConfig{Heartbeat: 5 * time.Millisecond}})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := s.gw.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.gw.Serve(ctx) }()
	defer func() { cancel(); <-served }()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.gw.Addr().String()+"/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = bearer("u1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/events: %v", err)
	}
	defer resp.Body.Close()
	wantStreamHeaders(t, resp)
	nextCall(t, fake)
	r := &eventReader{Reader: ssetest.NewReader(t, resp.Body, func() { cancel(); _ = resp.Body.Close() }, 10*time.Second), resp: resp}
	start := time.Now()
	for time.Since(start) < 10*20*time.Millisecond {
		r.Next()
	}
	go func() { fake.live <- taskMsg(taskB, "") }()
	if ev := r.NextEvent(); ev.Event != "task" || !strings.Contains(ev.Data, taskB) {
		t.Errorf("event after the server timeouts passed = %+v, want task %s", ev, taskB)
	}
}

// TestUpstreamFailure: an upstream that fails after the stream started is reported as a problem event in
// the REST error shape (server faults with their fixed message), then the stream ends; a clean end of the
// feed just ends the stream, for the browser to reconnect.
func TestUpstreamFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want []sseEvent
	}{
		{"unavailable", status.Error(codes.Unavailable, "dispatch: shutting down on host 10.0.0.7"),
			[]sseEvent{{ID: "3.1796072400000", Event: "problem", Data: `{"error":{"code":503,"status":"UNAVAILABLE","message":"the dispatch service is unavailable; try again"}}`}}},
		{"unavailable answered", grpcerr.ToStatus(apperr.Wrap(apperr.Unavailable, errors.New("dial tcp 10.0.0.8:5432"), "the database is unavailable; try again")).Err(),
			[]sseEvent{{ID: "3.1796072400000", Event: "problem", Data: `{"error":{"code":503,"status":"UNAVAILABLE","message":"the database is unavailable; try again"}}`}}},
		{"unauthenticated", status.Error(codes.Unauthenticated, "token revoked"),
			[]sseEvent{{ID: "3.1796072400000", Event: "problem", Data: `{"error":{"code":401,"status":"UNAUTHENTICATED","message":"token revoked"}}`}}},
		{"clean end", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startEvents(t, newFakeDispatch(), gateway.Config{})
			r := openEvents(t, s, "/v1/events", bearer("u1"))
			wantStreamHeaders(t, r.resp)
			call := nextCall(t, s.fake)
			for range 4 {
				r.Next() // retry, open, the snapshot task, snapshotComplete
			}
			s.fake.fail <- tc.err
			var got []sseEvent
			for range tc.want {
				got = append(got, r.NextEvent())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
				t.Errorf("after the failure: read %v, want EOF (the server ends the response)", err)
			}
			waitDone(t, call.done, "upstream failed")
		})
	}
}

// TestEventsNameTheUnreachableCourierService: /v1/events with couriers reads dispatch and courier; when
// the gateway cannot reach courier, the answer names courier (not dispatch, whose method the route is
// annotated with) and no address.
func TestEventsNameTheUnreachableCourierService(t *testing.T) {
	fake := newFakeDispatch()
	conn, stopGRPC := serveBufconn(t, func(s *grpc.Server) { dispatchv1.RegisterDispatchServiceServer(s, fake) })
	t.Cleanup(stopGRPC)
	dead, err := grpc.NewClient("passthrough:///courier",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
			return nil, errors.New("dial tcp 10.0.0.9:9090: connection refused")
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dead.Close() })
	g, err := gateway.New(t.Context(), gateway.Config{Browser: gateway.BrowserConfig{Now: func() time.Time { return sseNow }}}, []gateway.Service{
		{Name: "lastmile.dispatch.v1.DispatchService", Conn: conn, Register: gateway.Routes(dispatchv1.RegisterDispatchServiceHandlerClient, dispatchv1.NewDispatchServiceClient)},
		{Name: "lastmile.courier.v1.CourierService", Conn: dead, Register: gateway.Routes(courierv1.RegisterCourierServiceHandlerClient, courierv1.NewCourierServiceClient)},
	})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	resp, body := do(t, srv, http.MethodGet, "/v1/events?couriers=true", nil, bearer("u1"))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status = %d %s, want 503", resp.StatusCode, body)
	}
	if diff := cmp.Diff(errorJSON(503, "UNAVAILABLE", "the courier service is unavailable; try again"), decode(t, body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
}

// rawEventStream opens GET /v1/events as user sub on a raw TCP connection with a small receive buffer
// and returns the connection, from which the test reads nothing until it chooses to: a browser tab that
// stopped reading.
func rawEventStream(t *testing.T, s *eventStack, sub string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", s.srv.Listener.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := conn.(*net.TCPConn).SetReadBuffer(1024); err != nil {
		t.Fatalf("SetReadBuffer: %v", err)
	}
	if _, err := fmt.Fprintf(conn, "GET /v1/events HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer %s\r\n\r\n", token(sub)); err != nil {
		t.Fatalf("write request: %v", err)
	}
	return conn
}

// TestStreamAgeFreesTheSlotOfABrowserThatStoppedReading: on a quiet account a browser that stopped
// reading is sent nothing that could fill its socket buffers, so no write times out; the streams' age
// limit ends its stream all the same, which cancels the upstream call and frees the user's slot (a fifth
// stream, refused before, opens), and the end is clean: the retry hint and a comment, then the end of the
// response, which a browser reading again finds.
func TestStreamAgeFreesTheSlotOfABrowserThatStoppedReading(t *testing.T) {
	const perUser = 4
	s := startEvents(t, newFakeDispatch(), gateway.Config{Browser: gateway.BrowserConfig{
		MaxEventStreamsPerUser: perUser, MaxEventStreamAge: time.Hour,
		// Neither a heartbeat nor a write timeout ends a stream during the test.
		Heartbeat: time.Hour, EventWriteTimeout: time.Hour,
	}})
	aged := make(chan time.Time) // closed: every stream is at its age limit
	limits := make(chan time.Duration, 16)
	gateway.SetStreamAgeTimer(s.gw, func(d time.Duration) (<-chan time.Time, func() bool) {
		limits <- d
		return aged, func() bool { return true }
	})
	var conns []net.Conn
	var calls []watchCall
	for range perUser {
		conns = append(conns, rawEventStream(t, s, "u1"))
		calls = append(calls, nextCall(t, s.fake))
		select {
		case d := <-limits: // the stream holds its slot and waits for its age limit
			if d <= 54*time.Minute || d > time.Hour {
				t.Errorf("age limit %v, want MaxEventStreamAge less at most 10 %%: (54m, 1h]", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the stream did not start its age timer within 10s")
		}
	}
	resp, body := do(t, s.srv, http.MethodGet, "/v1/events", nil, bearer("u1"))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fifth stream while four are open: %d %s, want 429", resp.StatusCode, body)
	}
	nextCall(t, s.fake) // the refused call was opened, then cancelled

	close(aged)
	for _, c := range calls {
		waitDone(t, c.done, "stream at its age limit")
	}
	wantEnd := sseEvent{Retry: "3000", Comment: "the stream reached its maximum age: reconnect with Last-Event-ID"}
	// The slots are released once the handlers have returned, just after the upstream calls ended.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := do(t, s.srv, http.MethodGet, "/v1/events", nil, bearer("u1"))
		nextCall(t, s.fake)
		if resp.StatusCode == http.StatusOK {
			// The fifth stream's age limit is over at once too: its whole body is there.
			if want := "\n\nretry: 3000\n: " + wantEnd.Comment + "\n\n"; !strings.HasSuffix(string(body), want) {
				t.Errorf("fifth stream's body %q, want it to end with %q", body, want)
			}
			break
		}
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("fifth stream after the age limit: %d %s, want 200 once a slot is released", resp.StatusCode, body)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The browser reads again: its stream ended cleanly.
	resp, err := http.ReadResponse(bufio.NewReader(conns[0]), nil)
	if err != nil {
		t.Fatalf("read the stalled stream's response: %v", err)
	}
	wantStreamHeaders(t, resp)
	r := ssetest.NewReader(t, resp.Body, func() { _ = conns[0].Close() }, 10*time.Second)
	var got []sseEvent
	for range 5 {
		got = append(got, r.Next())
	}
	want := []sseEvent{
		{Retry: "3000"},
		{ID: "0.1796072400000", Event: "open", Data: `{"resumed":false}`},
		{ID: "1.1796072400000", Event: "task"},
		{ID: "2.1796072400000", Event: "snapshotComplete"},
		wantEnd,
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(sseEvent{}, "Data")); diff != "" {
		t.Errorf("the stalled stream (-want +got):\n%s", diff)
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last block: read %v, want EOF (the response ended)", err)
	}
}
