package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/gateway/ssetest"
)

// browser is a browser's view of the gateway: a cookie jar that scopes cookies by path like a browser.
type browser struct {
	t      *testing.T
	base   *url.URL
	client *http.Client
}

func newBrowser(t *testing.T, s *system) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := url.Parse("http://" + s.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, base: base, client: &http.Client{Jar: jar}}
}

// cookie returns the value of the cookie the jar would send to path.
func (b *browser) cookie(path, name string) string {
	for _, c := range b.client.Jar.Cookies(b.base.ResolveReference(&url.URL{Path: path})) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// do sends a request as the page's JavaScript would (same origin); withCSRF adds the X-CSRF-Token header.
func (b *browser) do(method, path, body string, withCSRF bool) (*http.Response, map[string]any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.t.Context(), 10*time.Second)
	defer cancel()
	var rd io.Reader = http.NoBody
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base.String()+path, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Origin", b.base.Scheme+"://"+b.base.Host)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if withCSRF {
		req.Header.Set("X-CSRF-Token", b.cookie("/", "lm_csrf"))
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			b.t.Fatalf("%s %s: body %q is not JSON: %v", method, path, raw, err)
		}
	}
	return resp, out
}

// events opens an event stream with the jar's cookies (as EventSource does) plus header.
func (b *browser) events(path string, header http.Header) (*http.Response, *sseReader) {
	b.t.Helper()
	ctx, cancel := context.WithCancel(b.t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base.String()+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.client.Do(req)
	if err != nil {
		cancel()
		b.t.Fatalf("GET %s: %v", path, err)
	}
	r := &sseReader{ssetest.NewReader(b.t, resp.Body, func() { cancel(); _ = resp.Body.Close() }, 20*time.Second), b.t}
	b.t.Cleanup(r.Close)
	return resp, r
}

type sseEvent struct{ id, name, data string }

// sseReader reads an event stream's named events.
type sseReader struct {
	*ssetest.Reader
	t *testing.T
}

// next returns the next event, skipping the retry hint and heartbeats; it fails the test after 20 s.
func (r *sseReader) next() sseEvent {
	r.t.Helper()
	ev := r.NextNamed()
	return sseEvent{ev.ID, ev.Event, ev.Data}
}

// splitEventID returns an /v1/events id's number and its time in Unix ms.
func splitEventID(t *testing.T, id string) (string, int64) {
	t.Helper()
	n, ms, ok := strings.Cut(id, ".")
	if !ok {
		t.Fatalf("event id %q has no time", id)
	}
	return n, mustMillis(t, ms)
}

func mustMillis(t *testing.T, s string) int64 {
	t.Helper()
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("event id time %q: %v", s, err)
	}
	return ms
}

// updateMillis returns a task's updateTime in Unix ms.
func updateMillis(t *testing.T, task map[string]any) int64 {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, str(task, "updateTime"))
	if err != nil {
		t.Fatalf("task updateTime %q: %v", str(task, "updateTime"), err)
	}
	return at.UnixMilli()
}

// resumedSnapshot reads a snapshot's task events ("<id> <state>") up to snapshotComplete, whose data must
// be complete.
func resumedSnapshot(t *testing.T, feed *sseReader, complete string) []string {
	t.Helper()
	var snapshot []string
	for {
		ev := feed.next()
		if ev.name == "snapshotComplete" {
			if ev.data != complete {
				t.Errorf("snapshotComplete = %s, want %s", ev.data, complete)
			}
			return snapshot
		}
		if ev.name != "task" {
			t.Fatalf("snapshot event %+v, want task events then snapshotComplete", ev)
		}
		snapshot = append(snapshot, str(ev.task(t), "id")+" "+str(ev.task(t), "state"))
	}
}

// task decodes a task event's data.
func (e sseEvent) task(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(e.data), &m); err != nil {
		t.Fatalf("event %s data %q: %v", e.name, e.data, err)
	}
	return m
}

// TestBrowserSessionAndEvents is the browser's side of issue 10 item 4 through the real binary: log in
// with a session cookie, follow tasks as Server-Sent Events, resume after a disconnection without losing
// what happened meanwhile, change state only with the CSRF token, refresh and log out.
func TestBrowserSessionAndEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s := startWithAdmin(t)
	admin := s.login(t, adminEmail, adminPassword)
	s.createUser(t, admin.access, "carla@example.com", "carla's long password", "")
	s.createUser(t, admin.access, "dora@example.com", "dora's long password", "")
	carla := s.login(t, "carla@example.com", "carla's long password")
	dora := s.login(t, "dora@example.com", "dora's long password")
	tasks := dispatchv1.NewDispatchServiceClient(s.grpcConn(t, ""))
	create := func(requestID string) string {
		task, err := tasks.CreateTask(bearer(ctx, carla.access), taskRequest(requestID))
		if err != nil {
			t.Fatalf("CreateTask: %v", err)
		}
		return task.GetId()
	}

	b := newBrowser(t, s)
	resp, body := b.do(http.MethodPost, "/v1/session", `{"email":"carla@example.com","password":"carla's long password"}`, false)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/session = %d %v, want 200", resp.StatusCode, body)
	}
	checkSessionCookies(t, resp)
	if str(body, "user", "email") != "carla@example.com" || str(body, "csrfToken") != b.cookie("/", "lm_csrf") ||
		str(body, "expiresAt") == "" || body["accessToken"] != nil || body["refreshToken"] != nil {
		t.Errorf("POST /v1/session body = %v, want the user, the expiry and the CSRF token, and no token", body)
	}

	// A reloaded page asks who is signed in.
	resp, body = b.do(http.MethodGet, "/v1/session", "", false)
	if resp.StatusCode != http.StatusOK || str(body, "user", "email") != "carla@example.com" || str(body, "csrfToken") != b.cookie("/", "lm_csrf") {
		t.Errorf("GET /v1/session = %d %v, want 200 with carla and the CSRF token", resp.StatusCode, body)
	}

	// The live feed with the session cookie. Its ids are the event's number and, after a dot, a time in
	// Unix ms from which a resume loses nothing: the stream's start, then the latest task update sent.
	opened := time.Now().UnixMilli()
	resp, feed := b.events("/v1/events", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /v1/events = %d %s, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ev := feed.next()
	if n, ms := splitEventID(t, ev.id); n != "0" || ms < opened || ms > time.Now().UnixMilli() || ev.name != "open" || ev.data != `{"resumed":false}` {
		t.Fatalf("first event = %+v, want open, id 0 and the time it opened", ev)
	}
	start := ev.id[len("0"):] // ".<ms>"
	if got, want := feed.next(), (sseEvent{"1" + start, "snapshotComplete", "{}"}); got != want {
		t.Fatalf("second event = %+v, want %+v (carla has no task yet)", got, want)
	}
	first := create("browser-1")
	ev = feed.next()
	firstUpdate := updateMillis(t, ev.task(t))
	if ev.name != "task" || str(ev.task(t), "id") != first || str(ev.task(t), "state") != "TASK_STATE_PENDING" ||
		ev.id != "2."+strconv.FormatInt(max(firstUpdate, mustMillis(t, start[1:])), 10) {
		t.Fatalf("event after CreateTask = %+v, want task %s PENDING with id 2.<its update time>", ev, first)
	}
	lastID := ev.id
	feed.Close()

	// While the browser is away: one task is created and the first one is cancelled (by the page, with
	// the CSRF token; without it the cancel is refused).
	second := create("browser-2")
	resp, body = b.do(http.MethodPost, "/v1/tasks/"+first+":cancel", `{"reason":"CANCEL_REASON_CUSTOMER_REQUEST"}`, false)
	if resp.StatusCode != http.StatusForbidden || !cmp.Equal(body, map[string]any{"error": map[string]any{
		"code": 403.0, "status": "PERMISSION_DENIED",
		"message": "CSRF check failed: the X-CSRF-Token header is missing: send the value of the lm_csrf cookie"}}) {
		t.Fatalf("cancel without the CSRF header = %d %v, want 403 PERMISSION_DENIED", resp.StatusCode, body)
	}
	resp, body = b.do(http.MethodPost, "/v1/tasks/"+first+":cancel", `{"reason":"CANCEL_REASON_CUSTOMER_REQUEST"}`, true)
	if resp.StatusCode != http.StatusOK || str(body, "state") != "TASK_STATE_CANCELLED" {
		t.Fatalf("cancel with the CSRF header = %d %v, want 200 CANCELLED", resp.StatusCode, body)
	}

	// EventSource reconnects with Last-Event-ID: ids go on, and the snapshot holds what happened: the
	// task created while away, and the cancelled one in its final state (the finished tasks since the
	// id's time), so that nothing is lost.
	resp, feed = b.events("/v1/events", http.Header{"Last-Event-Id": {lastID}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("resume = %d, want 200", resp.StatusCode)
	}
	stamp := lastID[len("2"):]
	if got, want := feed.next(), (sseEvent{"3" + stamp, "open", `{"resumed":true}`}); got != want {
		t.Fatalf("first event after resume = %+v, want %+v", got, want)
	}
	if got, want := resumedSnapshot(t, feed, `{"taskCount":2}`), []string{second + " TASK_STATE_PENDING", first + " TASK_STATE_CANCELLED"}; !cmp.Equal(got, want) {
		t.Errorf("snapshot after resume = %v, want %v (the open task created while away, then the task cancelled while away)", got, want)
	}
	feed.Close()

	// An id without a time (sent before ids carried one) resumes as it did: the open tasks only.
	resp, feed = b.events("/v1/events", http.Header{"Last-Event-Id": {"2"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("resume with a plain id = %d, want 200", resp.StatusCode)
	}
	if ev := feed.next(); ev.name != "open" || !strings.HasPrefix(ev.id, "3.") || ev.data != `{"resumed":true}` {
		t.Fatalf("first event after a plain resume = %+v, want open with id 3.<ms>", ev)
	}
	if got, want := resumedSnapshot(t, feed, `{"taskCount":1}`), []string{second + " TASK_STATE_PENDING"}; !cmp.Equal(got, want) {
		t.Errorf("snapshot after a plain resume = %v, want %v", got, want)
	}
	feed.Close()

	// One task's events: the cancelled task's final state, then end.
	resp, one := b.events("/v1/tasks/"+first+"/events", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/tasks/{id}/events = %d, want 200", resp.StatusCode)
	}
	ev = one.next()
	if task, _ := ev.task(t)["task"].(map[string]any); ev.name != "task" || str(task, "id") != first || str(task, "state") != "TASK_STATE_CANCELLED" {
		t.Errorf("task event = %+v, want the CANCELLED task", ev)
	}
	if got, want := one.next(), (sseEvent{"1", "end", "{}"}); got != want {
		t.Errorf("after the final state: %+v, want %+v", got, want)
	}
	// Other callers, as on GET /v1/tasks/{id}: another customer gets 404, nobody 401.
	for _, tc := range []struct {
		token string
		want  int
	}{{dora.access, http.StatusNotFound}, {"", http.StatusUnauthorized}} {
		code, _, body := s.rest(t, http.MethodGet, "/v1/tasks/"+first+"/events", tc.token, "")
		restCode, _, _ := s.rest(t, http.MethodGet, "/v1/tasks/"+first, tc.token, "")
		if code != tc.want || restCode != tc.want {
			t.Errorf("events / REST for token %.8q = %d / %d %v, want %d for both", tc.token, code, restCode, body, tc.want)
		}
	}

	// Refresh rotates the tokens; it needs the CSRF token too.
	oldAccess := b.cookie("/", "lm_access")
	resp, body = b.do(http.MethodPost, "/v1/session/refresh", "", false)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("refresh without the CSRF header = %d %v, want 403", resp.StatusCode, body)
	}
	resp, body = b.do(http.MethodPost, "/v1/session/refresh", "", true)
	if resp.StatusCode != http.StatusOK || str(body, "expiresAt") == "" {
		t.Fatalf("refresh = %d %v, want 200 with the new expiry", resp.StatusCode, body)
	}
	checkSessionCookies(t, resp)
	if b.cookie("/", "lm_access") == oldAccess {
		t.Error("refresh kept the old access token")
	}
	refreshToken := b.cookie("/v1/session", "lm_refresh")

	// Logout revokes the session and clears the cookies.
	resp, body = b.do(http.MethodDelete, "/v1/session", "", true)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /v1/session = %d %v, want 204", resp.StatusCode, body)
	}
	cleared := map[string]string{}
	for _, c := range resp.Cookies() {
		if c.MaxAge >= 0 || c.Value != "" {
			t.Errorf("logout cookie %s: value %q, Max-Age %d, want empty and expired", c.Name, c.Value, c.MaxAge)
		}
		cleared[c.Name] = c.Path
	}
	if want := map[string]string{"lm_access": "/", "lm_refresh": "/v1/session", "lm_csrf": "/"}; !cmp.Equal(cleared, want) {
		t.Errorf("logout cleared %v, want %v", cleared, want)
	}
	resp, _ = b.events("/v1/events", nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/events after logout = %d, want 401", resp.StatusCode)
	}
	resp, body = b.do(http.MethodGet, "/v1/session", "", false)
	if resp.StatusCode != http.StatusUnauthorized || str(body, "error", "message") != "no session: log in" {
		t.Errorf("GET /v1/session after logout = %d %v, want 401 no session", resp.StatusCode, body)
	}
	code, _, body := s.rest(t, http.MethodPost, "/v1/auth:refresh", "", mustJSON(t, map[string]string{"refreshToken": refreshToken}))
	if code != http.StatusUnauthorized {
		t.Errorf("the logged-out refresh token = %d %v, want 401 (revoked)", code, body)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Error("test ran out of time")
	}
}

// checkSessionCookies checks the exact attributes of the three session cookies a login or refresh sets.
func checkSessionCookies(t *testing.T, resp *http.Response) {
	t.Helper()
	type attrs struct {
		Path     string
		HttpOnly bool
		Secure   bool
		SameSite http.SameSite
	}
	got := map[string]attrs{}
	ages := map[string]int{}
	for _, c := range resp.Cookies() {
		got[c.Name] = attrs{c.Path, c.HttpOnly, c.Secure, c.SameSite}
		ages[c.Name] = c.MaxAge
		if c.Value == "" {
			t.Errorf("cookie %s is empty", c.Name)
		}
	}
	want := map[string]attrs{
		"lm_access":  {"/", true, false, http.SameSiteStrictMode},
		"lm_refresh": {"/v1/session", true, false, http.SameSiteStrictMode},
		"lm_csrf":    {"/", false, false, http.SameSiteStrictMode},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("session cookies (-want +got):\n%s", diff)
	}
	// The lifetimes are the tokens': 15 minutes for the access token, 30 days for the refresh token (the
	// defaults), less the second the token's expiry is truncated to and the time the response took.
	if a := ages["lm_access"]; a < 15*60-60 || a > 15*60 {
		t.Errorf("lm_access Max-Age = %d, want the access token's lifetime (900 s)", a)
	}
	if r := ages["lm_refresh"]; r < 30*24*3600-60 || r > 30*24*3600 || ages["lm_csrf"] != r {
		t.Errorf("lm_refresh / lm_csrf Max-Age = %d / %d, want the refresh token's lifetime (30 days) for both", r, ages["lm_csrf"])
	}
}

// TestBrowserCourierEvents: dispatchers and admins follow couriers on /v1/events?couriers=true; customers
// are refused with 403 before the stream starts, as WatchCouriers refuses them.
func TestBrowserCourierEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := startWithAdmin(t)
	admin := s.login(t, adminEmail, adminPassword)
	s.createUser(t, admin.access, "carla@example.com", "carla's long password", "")

	customer := newBrowser(t, s)
	if resp, body := customer.do(http.MethodPost, "/v1/session", `{"email":"carla@example.com","password":"carla's long password"}`, false); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/session as carla = %d %v", resp.StatusCode, body)
	}
	if resp, _ := customer.events("/v1/events?couriers=true", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("couriers=true as a customer = %d, want 403", resp.StatusCode)
	}

	dispatcher := newBrowser(t, s)
	if resp, body := dispatcher.do(http.MethodPost, "/v1/session", mustJSON(t, map[string]string{"email": adminEmail, "password": adminPassword}), false); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/session as the admin = %d %v", resp.StatusCode, body)
	}
	resp, feed := dispatcher.events("/v1/events?couriers=true", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("couriers=true as the admin = %d, want 200", resp.StatusCode)
	}
	if ev := feed.next(); ev.name != "open" || !strings.HasPrefix(ev.id, "0.") || ev.data != `{"resumed":false}` {
		t.Fatalf("first event = %+v, want open with id 0.<ms>", ev)
	}
	courierID, rider := registerCourier(t, s, admin.access, "rider@example.com")
	goAvailable(ctx, t, s, courierv1.NewCourierServiceClient(s.grpcConn(t, "")), courierID, rider.access, courierLat, courierLng)
	for range 20 {
		ev := feed.next()
		if ev.name != "courier" {
			continue
		}
		c, _ := ev.task(t)["courier"].(map[string]any)
		if str(c, "courierId") == courierID && str(c, "status") == "COURIER_STATUS_AVAILABLE" {
			return
		}
	}
	t.Fatal("no courier event saying the rider is AVAILABLE within 20 events")
}
