package browser_test

// The tests in this file drive the dashboard against a stand-in for the REST API (stubAPI), not the whole
// system: each sets up exactly the tasks and couriers a case needs (a picked-up task, a refused event
// stream), which the simulator of TestDashboard cannot be made to produce on cue. The pages and their
// scripts are the real ones (internal/web), served with the gateway's Content-Security-Policy.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"lastmile/internal/web"
)

// needBrowser returns the browser to use, skipping the test when there is none (as TestDashboard does).
func needBrowser(t *testing.T) string {
	t.Helper()
	exe := browser()
	if exe == "" {
		if os.Getenv("LASTMILE_REQUIRE_BROWSER") != "" {
			t.Fatal("LASTMILE_REQUIRE_BROWSER is set but no chromium, chromium-browser or google-chrome is on PATH")
		}
		t.Skip("no Chromium or Chrome installed (set LASTMILE_REQUIRE_BROWSER=1 to make this a failure)")
	}
	return exe
}

// stubAPI answers the REST routes the dashboard calls, from tasks and couriers a test sets. The user is
// an admin; POST /v1/session signs in (any password), and GET /v1/session answers 401 until then.
type stubAPI struct {
	mu       sync.Mutex
	tasks    map[string]map[string]any // by id, as the API's JSON
	couriers []map[string]any          // CourierSnapshot JSON
	// eventsRefusal, when set, is the status and JSON body every GET /v1/events is refused with.
	eventsStatus int
	eventsBody   string
	events       chan string     // further SSE blocks for the open /v1/events streams
	calls        []string        // "POST /v1/tasks/…:assign {body}", in order
	suspended    map[string]bool // couriers whose account is suspended
	// refusals answer the next requests to a path (without the query) with an error instead: each
	// answers once, in order, with the Retry-After header when set.
	refusals map[string][]refusal
	hits     map[string]int // requests by path, refused or not
	// overviewGate, when set, holds every courier overview request until it is closed (a slow server);
	// overviewHeld counts the requests it held.
	overviewGate atomic.Pointer[chan struct{}]
	overviewHeld atomic.Int32
}

// refusal is one error answer of the stub.
type refusal struct {
	status     int
	retryAfter string
	message    string
}

const stubCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// stubTask is an open task near Alexanderplatz in state st, held by courierID when not "".
func stubTask(id, st, courierID string) map[string]any {
	t := map[string]any{
		"id": id, "state": "TASK_STATE_" + st, "customerId": "01a23503-9354-72ac-810e-8988020670cb",
		"pickup":   map[string]any{"location": map[string]any{"latitude": 52.5200, "longitude": 13.4050}, "address": "Shop 1"},
		"dropoff":  map[string]any{"location": map[string]any{"latitude": 52.5230, "longitude": 13.4120}, "address": "Home 1"},
		"priority": "TASK_PRIORITY_NORMAL", "size": "PARCEL_SIZE_SMALL",
		"createTime": time.Now().Add(-5 * time.Minute).UTC().Format(time.RFC3339Nano), "updateTime": time.Now().UTC().Format(time.RFC3339Nano),
		"etag":    `"4"`,
		"history": []any{map[string]any{"state": "TASK_STATE_PENDING", "changeTime": time.Now().Add(-5 * time.Minute).UTC().Format(time.RFC3339Nano), "actor": "ACTOR_CUSTOMER"}},
	}
	if courierID != "" {
		t["courierId"] = courierID
	}
	return t
}

// stubCourier is a courier snapshot at lat, lng.
func stubCourier(id, name, status string, lat, lng float64) map[string]any {
	return map[string]any{"courierId": id, "displayName": name, "status": "COURIER_STATUS_" + status,
		"transportMode": "TRANSPORT_MODE_BICYCLE", "capacity": 2,
		"lastLocation": map[string]any{"location": map[string]any{"latitude": lat, "longitude": lng}, "recordedAt": time.Now().UTC().Format(time.RFC3339Nano)}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *stubAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if gate := s.overviewGate.Load(); gate != nil && strings.HasSuffix(r.URL.Path, "/overview") {
		s.overviewHeld.Add(1)
		<-*gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := r.URL.Path
	signedIn := false
	if c, err := r.Cookie("lm_access"); err == nil && c.Value == "ok" {
		signedIn = true
	}
	user := map[string]any{"user": map[string]any{"id": "01a23500-0000-7000-8000-000000000001", "email": "admin@lastmile.local", "displayName": "Administrator", "role": "ROLE_ADMIN"}}
	switch {
	case p == "/v1/session" && r.Method == http.MethodPost:
		http.SetCookie(w, &http.Cookie{Name: "lm_access", Value: "ok", Path: "/", HttpOnly: true})
		http.SetCookie(w, &http.Cookie{Name: "lm_csrf", Value: "csrf", Path: "/"})
		writeJSON(w, http.StatusOK, user)
		return
	case !strings.HasPrefix(p, "/v1/"):
		http.NotFound(w, r)
		return
	case !signedIn:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"code": 401, "status": "UNAUTHENTICATED", "message": "authentication required"}})
		return
	}
	if s.hits == nil {
		s.hits = map[string]int{}
	}
	s.hits[p]++
	if rs := s.refusals[p]; len(rs) > 0 {
		s.refusals[p] = rs[1:]
		if rs[0].retryAfter != "" {
			w.Header().Set("Retry-After", rs[0].retryAfter)
		}
		writeJSON(w, rs[0].status, map[string]any{"error": map[string]any{"code": rs[0].status, "message": rs[0].message}})
		return
	}
	var body string
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		body = string(b)
	}
	if r.Method != http.MethodGet {
		s.calls = append(s.calls, r.Method+" "+p+" "+body)
	}
	task := func(id string) map[string]any {
		t, ok := s.tasks[id]
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"code": 404, "status": "NOT_FOUND", "message": "task not found"}})
		}
		return t
	}
	switch {
	case p == "/v1/session":
		writeJSON(w, http.StatusOK, user)
	case p == "/v1/couriers": // pages of pageSize (at most 1,000) couriers; the token is the offset
		size, _ := strconv.Atoi(r.URL.Query().Get("pageSize"))
		if size <= 0 || size > 1000 {
			size = 1000
		}
		from, _ := strconv.Atoi(r.URL.Query().Get("pageToken"))
		cs, next := []any{}, ""
		for i, c := range s.couriers[min(from, len(s.couriers)):] {
			if i == size {
				next = strconv.Itoa(from + size)
				break
			}
			cs = append(cs, map[string]any{"id": c["courierId"], "displayName": c["displayName"], "status": c["status"], "transportMode": c["transportMode"], "capacity": c["capacity"]})
		}
		writeJSON(w, http.StatusOK, map[string]any{"couriers": cs, "nextPageToken": next, "totalSize": len(s.couriers)})
	case p == "/v1/tasks": // finished tasks: none listed, 140 of each state counted (as a demo has)
		writeJSON(w, http.StatusOK, map[string]any{"totalSize": 140})
	case p == "/v1/users":
		writeJSON(w, http.StatusOK, map[string]any{})
	case strings.HasPrefix(p, "/v1/users/"): // a courier's user: "u" + the courier id; suspended when listed
		id := strings.TrimPrefix(p, "/v1/users/u")
		status := "USER_STATUS_ACTIVE"
		if s.suspended[id] {
			status = "USER_STATUS_SUSPENDED"
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": "u" + id, "role": "ROLE_COURIER", "status": status})
	case strings.HasPrefix(p, "/v1/couriers/") && !strings.HasSuffix(p, "/overview"):
		writeJSON(w, http.StatusOK, map[string]any{"id": strings.TrimPrefix(p, "/v1/couriers/"), "userId": "u" + strings.TrimPrefix(p, "/v1/couriers/")})
	case strings.HasPrefix(p, "/v1/couriers/") && strings.HasSuffix(p, "/overview"):
		id := strings.TrimSuffix(strings.TrimPrefix(p, "/v1/couriers/"), "/overview")
		for _, c := range s.couriers {
			if c["courierId"] == id {
				writeJSON(w, http.StatusOK, map[string]any{"courier": c})
				return
			}
		}
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"code": 404, "status": "NOT_FOUND", "message": "courier not found"}})
	case strings.HasSuffix(p, "/explanation"):
		writeJSON(w, http.StatusOK, map[string]any{})
	case strings.HasSuffix(p, ":assign") && r.Method == http.MethodPost:
		t := task(strings.TrimSuffix(strings.TrimPrefix(p, "/v1/tasks/"), ":assign"))
		if t == nil {
			return
		}
		var req struct{ CourierID string }
		_ = json.Unmarshal([]byte(body), &req)
		t["state"], t["courierId"], t["etag"] = "TASK_STATE_ASSIGNED", req.CourierID, `"5"`
		writeJSON(w, http.StatusOK, t)
	case strings.HasSuffix(p, ":cancel") && r.Method == http.MethodPost:
		t := task(strings.TrimSuffix(strings.TrimPrefix(p, "/v1/tasks/"), ":cancel"))
		if t == nil {
			return
		}
		t["state"] = "TASK_STATE_CANCELLED"
		writeJSON(w, http.StatusOK, t)
	case strings.HasPrefix(p, "/v1/tasks/") && r.Method == http.MethodGet:
		if t := task(strings.TrimPrefix(p, "/v1/tasks/")); t != nil {
			writeJSON(w, http.StatusOK, t)
		}
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"code": 404, "status": "NOT_FOUND", "message": "no such route in the stub: " + r.Method + " " + p}})
	}
}

// serveEvents is GET /v1/events: a snapshot of the open tasks and the couriers, snapshotComplete, then
// what the test sends on s.events. It runs without the lock while the stream is open.
func (s *stubAPI) serveEvents(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.eventsStatus != 0 {
		status, body := s.eventsStatus, s.eventsBody
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
		return
	}
	var b strings.Builder
	b.WriteString("retry: 3000\n\n")
	n := 0
	block := func(event string, v any) {
		data, _ := json.Marshal(v)
		n++
		fmt.Fprintf(&b, "id: %d.%d\nevent: %s\ndata: %s\n\n", n, time.Now().UnixMilli(), event, data)
	}
	for _, t := range s.tasks {
		block("task", t)
	}
	for _, c := range s.couriers {
		if c["status"] != "COURIER_STATUS_OFFLINE" { // as WatchCouriers' snapshot, which skips them
			block("courier", map[string]any{"courier": c})
		}
	}
	block("snapshotComplete", map[string]any{})
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = io.WriteString(w, b.String())
	w.(http.Flusher).Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-s.events:
			_, _ = io.WriteString(w, ev)
			w.(http.Flusher).Flush()
		}
	}
}

// startStub serves the real pages and the stub API on a loopback port and returns the base URL.
func startStub(t *testing.T, s *stubAPI) string {
	t.Helper()
	site, err := web.New(web.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if s.tasks == nil {
		s.tasks = map[string]map[string]any{}
	}
	s.events = make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", stubCSP)
		switch {
		case r.URL.Path == "/v1/events":
			if c, err := r.Cookie("lm_access"); err != nil || c.Value != "ok" {
				writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"code": 401, "status": "UNAUTHENTICATED", "message": "authentication required"}})
				return
			}
			s.serveEvents(w, r)
		case strings.HasPrefix(r.URL.Path, "/v1/"):
			s.ServeHTTP(w, r)
		default:
			site.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv.URL
}

// signIn opens the dashboard and logs in; the dashboard is live afterwards.
func signIn(p *page, base string) {
	p.t.Helper()
	p.do("open the dashboard and log in", 30*time.Second,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#login-email")),
		chromedp.SendKeys(chromedp.CSS("#login-email"), "dana@example.com"),
		chromedp.SendKeys(chromedp.CSS("#login-password"), "any password"),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
	)
}

// openTask selects a task from the list and waits for its drawer.
func openTask(p *page, id string) {
	p.t.Helper()
	p.poll("task "+id+" in the list", `document.querySelector('#tasks li[data-id="`+id+`"]') !== null`, 10*time.Second)
	eval[any](p, `document.querySelector('#tasks li[data-id="`+id+`"]').click()`)
	p.poll("the drawer of task "+id, `(document.getElementById('drawer-task-id') || {}).textContent === '`+id[len(id)-8:]+`'`, 10*time.Second)
}

const (
	pickedUpTask = "01a23502-10fa-7095-8f0c-2062c4ceb73b"
	pendingTask  = "01a23502-ebbb-7d62-a2d4-f7d074735736"
	courierA     = "01a23501-6310-7b97-bf5f-d3522ab37293"
	courierB     = "01a23501-6310-7b97-bf5f-d3522ab30001"
)

// TestTaskDrawerHasNoStrayText: the drawer of a task without proofs shows its facts, actions, timeline and
// explanation, and nothing else (it showed the word "null" under the actions, where the proofs would be).
func TestTaskDrawerHasNoStrayText(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{tasks: map[string]map[string]any{pendingTask: stubTask(pendingTask, "PENDING", "")}}
	base := startStub(t, s)
	p := newPage(t, exe)
	signIn(p, base)
	openTask(p, pendingTask)
	got := eval[[]string](p, `[...document.getElementById('drawer-body').childNodes].map((n) => n.nodeType === Node.TEXT_NODE ? 'text: ' + n.textContent : n.tagName.toLowerCase() + (n.className ? '.' + n.className : '') + (n.id ? '#' + n.id : ''))`)
	want := "header,dl.facts,div.actions,div#share-out,section,section"
	if strings.Join(got, ",") != want {
		t.Errorf("the drawer's parts = %q, want %q", strings.Join(got, ","), want)
	}
	if s := p.consoleProblems(); s != "" {
		t.Errorf("the browser reported problems:%s", s)
	}
}

// suspendedSamsTask is a stub with a task picked up by Sam, whose account is suspended (so the task may be
// given to another courier), and Bea, available beside it.
func suspendedSamsTask() *stubAPI {
	return &stubAPI{
		tasks: map[string]map[string]any{pickedUpTask: stubTask(pickedUpTask, "PICKED_UP", courierA)},
		couriers: []map[string]any{stubCourier(courierA, "Suspended Sam", "BUSY", 52.5210, 13.4080),
			stubCourier(courierB, "Bea", "AVAILABLE", 52.5150, 13.3950)},
		suspended: map[string]bool{courierA: true},
	}
}

// TestPickedUpTaskActions: a picked-up task cannot be cancelled (CancelTask refuses it, so the drawer
// offers no Cancel), and it may be given to another courier when its courier can no longer work (their
// account was suspended): the drawer offers that, and a courier clicked on the map gets it (AssignTask).
func TestPickedUpTaskActions(t *testing.T) {
	exe := needBrowser(t)
	s := suspendedSamsTask()
	base := startStub(t, s)
	p := newPage(t, exe)
	signIn(p, base)
	openTask(p, pickedUpTask)
	got := eval[[]string](p, `[...document.querySelectorAll('#drawer-body .actions button')].map((b) => b.textContent)`)
	if want := "Reassign (courier can no longer work)…,Share tracking link"; strings.Join(got, ",") != want {
		t.Fatalf("a picked-up task's actions = %q, want %q", strings.Join(got, ","), want)
	}
	eval[any](p, `document.querySelector('#drawer-body .actions button').click()`)
	// The couriers list offers Bea first: Sam is nearer, but holds the task (and may no longer work).
	if got, want := eval[string](p, `[...document.querySelectorAll('#couriers li .name')].map((n) => n.textContent).join(',') + ' / ' + document.activeElement.dataset.id`), "Bea,Suspended Sam / "+courierB; got != want {
		t.Errorf("couriers to reassign to / focus = %q, want %q", got, want)
	}
	if got, want := eval[string](p, `document.getElementById('hint').textContent`), "Click the courier who will collect the parcel of task 2c4ceb73b from Suspended Sam on the map, or choose one in the list · Esc to stop"; got != strings.Replace(want, "2c4ceb73b", pickedUpTask[len(pickedUpTask)-8:], 1) {
		t.Errorf("hint = %q", got)
	}
	// The drawer narrowed the map: Fit all frames the couriers again.
	eval[any](p, `document.getElementById('fit').click()`)
	p.poll("courier Bea in view", `(() => { const r = document.getElementById('map').getBoundingClientRect(); return LM.debug.couriers().some((c) => c.id === '`+courierB+`' && c.sx > 20 && c.sy > 60 && c.sx < r.width - 20 && c.sy < r.height - 60); })()`, 10*time.Second)
	xy := eval[[]float64](p, `(() => { const r = document.getElementById('map').getBoundingClientRect(); const c = LM.debug.couriers().find((c) => c.id === '`+courierB+`'); return [r.left + c.sx, r.top + c.sy]; })()`)
	p.do("click courier Bea", 10*time.Second, chromedp.MouseClickXY(xy[0], xy[1]))
	p.poll("the task ASSIGNED in the drawer", `document.querySelector('#drawer-body header .chip.s-ASSIGNED') !== null`, 10*time.Second)
	s.mu.Lock()
	calls := strings.Join(s.calls, "\n")
	s.mu.Unlock()
	if want := "POST /v1/tasks/" + pickedUpTask + `:assign {"courierId":"` + courierB + `","comment":"assigned from the dashboard"}`; calls != want {
		t.Errorf("the dashboard called\n%s\nwant\n%s", calls, want)
	}
	if s := p.consoleProblems(); s != "" {
		t.Errorf("the browser reported problems:%s", s)
	}
}

// TestPickedUpTaskOfAWorkingCourierOffersNoReassign: AssignTask refuses a picked-up task whose courier may
// still work (FAILED_PRECONDITION), yet the drawer offered "Reassign" on every picked-up task. With the
// courier's account active it offers only the share link, and says why.
func TestPickedUpTaskOfAWorkingCourierOffersNoReassign(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{
		tasks:    map[string]map[string]any{pickedUpTask: stubTask(pickedUpTask, "PICKED_UP", courierA)},
		couriers: []map[string]any{stubCourier(courierA, "Sam", "BUSY", 52.5210, 13.4080)},
	}
	base := startStub(t, s)
	p := newPage(t, exe)
	signIn(p, base)
	openTask(p, pickedUpTask)
	got := eval[[]string](p, `[...document.querySelectorAll('#drawer-body .actions button')].map((b) => b.textContent).concat((document.getElementById('actions-note') || {}).textContent || '')`)
	want := []string{"Share tracking link", "Picked up: the parcel stays with Sam until delivered. It may be given to another courier only if their account is suspended or deleted."}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("a picked-up task's actions and note = %q, want %q", got, want)
	}
	if s := p.consoleProblems(); s != "" {
		t.Errorf("the browser reported problems:%s", s)
	}
}

// TestTaskListFillsUnderARestingPointer: rows keep their places while the pointer is over the list, but
// a list with no rows yet has nothing to keep. In a window under about 700 px wide the Log in button sits
// where the list appears: after a click on it the list stayed empty until the pointer moved off it.
func TestTaskListFillsUnderARestingPointer(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{tasks: map[string]map[string]any{pendingTask: stubTask(pendingTask, "PENDING", "")}}
	base := startStub(t, s)
	p := newPage(t, exe)
	p.do("a narrow window", 10*time.Second, chromedp.EmulateViewport(660, 800))
	p.do("open the login form", 30*time.Second,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#login-email")))
	if !eval[bool](p, `(() => { const b = document.querySelector('#login-form button').getBoundingClientRect(), l = document.getElementById('tasks').getBoundingClientRect();
		const x = b.left + b.width / 2, y = b.top + b.height / 2; return x > l.left && x < l.right && y > l.top && y < l.bottom; })()`) {
		t.Fatal("the Log in button is not over the task list: this test no longer tries what it means to")
	}
	signIn(p, base)
	p.poll("the task in the list", `document.querySelectorAll('#tasks li').length === 1`, 10*time.Second)
}

// TestRefusedLiveUpdatesSayWhy: a refused event stream (429 when the user has too many open, one per
// dashboard tab; a fifth /v1/events is refused upstream) said only "offline — retrying". It says the
// server's reason, and goes live once the stream is accepted.
func TestRefusedLiveUpdatesSayWhy(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{tasks: map[string]map[string]any{pendingTask: stubTask(pendingTask, "PENDING", "")},
		eventsStatus: http.StatusTooManyRequests,
		eventsBody:   `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"too many open streams of WatchTasks: at most 4 per caller"}}`}
	base := startStub(t, s)
	p := newPage(t, exe)
	p.do("open the dashboard and log in", 30*time.Second,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#login-email")),
		chromedp.SendKeys(chromedp.CSS("#login-email"), "dana@example.com"),
		chromedp.SendKeys(chromedp.CSS("#login-password"), "any password"),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
	)
	const why = "Live updates refused (429): too many open streams of WatchTasks: at most 4 per caller. Retrying."
	p.poll("the refusal shown", `document.getElementById('conn').dataset.state === 'refused'`, 10*time.Second)
	if got := eval[[]string](p, `[document.getElementById('conn').textContent, document.getElementById('conn').title, document.querySelector('#toasts .toast').firstChild.textContent]`); strings.Join(got, "|") != "○ refused — retrying|"+why+"|"+why {
		t.Errorf("connection state, its tooltip and the toast = %q, want %q", got, []string{"○ refused — retrying", why, why})
	}
	s.mu.Lock()
	s.eventsStatus = 0
	s.mu.Unlock()
	p.poll("live once the stream is accepted", `document.getElementById('conn').dataset.state === 'live' && document.getElementById('conn').title === ''`, 20*time.Second)
	if got := eval[[]string](p, `LM.toasted`); len(got) != 1 {
		t.Errorf("toasts = %q, want the refusal once", got)
	}
	if s := p.consoleProblems(); s != "" {
		t.Errorf("the browser reported problems:%s", s)
	}
}

// TestPhoneLayout: on a phone-sized screen (390 × 844 CSS pixels) the dashboard fits the width (it was
// 1,243 px wide, the top bar on one line, leaving the map 50 px), the list sits above a full-width map,
// and a task's drawer covers the screen.
func TestPhoneLayout(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{tasks: map[string]map[string]any{pendingTask: stubTask(pendingTask, "PENDING", "")},
		couriers: []map[string]any{stubCourier(courierB, "Bea", "AVAILABLE", 52.5150, 13.3950)}}
	base := startStub(t, s)
	p := newPage(t, exe)
	p.do("a phone-sized window", 10*time.Second, chromedp.EmulateViewport(390, 844))
	signIn(p, base)
	p.poll("the task in the list", `document.querySelectorAll('#tasks li').length === 1`, 10*time.Second)
	box := func(sel string) []float64 {
		return eval[[]float64](p, `(() => { const r = document.querySelector('`+sel+`').getBoundingClientRect(); return [r.left, r.top, r.width, r.height].map(Math.round); })()`)
	}
	if got := eval[int](p, `document.documentElement.scrollWidth`); got != 390 {
		t.Errorf("the page is %d px wide, want 390 (the screen)", got)
	}
	list, m := box("#list"), box("#map")
	if m[0] != 0 || m[2] != 390 || m[3] < 250 || m[1] < list[1]+list[3] {
		t.Errorf("the map's box (left, top, width, height) = %v, want the full width, at least 250 px high, below the list %v", m, list)
	}
	openTask(p, pendingTask)
	if d := box("#drawer"); d[0] != 0 || d[1] != 0 || d[2] != 390 || d[3] != 844 {
		t.Errorf("the drawer's box = %v, want the whole screen [0 0 390 844]", d)
	}
	if s := p.consoleProblems(); s != "" {
		t.Errorf("the browser reported problems:%s", s)
	}
}

// sendTask pushes a task event to the open /v1/events streams.
func (s *stubAPI) sendTask(t map[string]any) {
	s.mu.Lock()
	s.tasks[t["id"].(string)] = t
	s.mu.Unlock()
	data, _ := json.Marshal(t)
	s.events <- fmt.Sprintf("id: 100.%d\nevent: task\ndata: %s\n\n", time.Now().UnixMilli(), data)
}

// TestTaskRowsByKeyboard: a keyboard user reaches the tasks with Tab (after the filter chips) and opens
// one with Enter; a chip or a row keeps the focus when the list is drawn anew (every 5 s, and when a task
// changes). Rows took clicks only, and a focused chip lost the focus at the next redraw.
func TestTaskRowsByKeyboard(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{tasks: map[string]map[string]any{pendingTask: stubTask(pendingTask, "PENDING", "")}}
	base := startStub(t, s)
	p := newPage(t, exe)
	signIn(p, base)
	p.poll("the task in the list", `document.querySelectorAll('#tasks li').length === 1`, 10*time.Second)
	arrives := func(id string, n int) {
		t.Helper()
		nt := stubTask(id, "PENDING", "")
		nt["createTime"] = time.Now().UTC().Format(time.RFC3339Nano)
		s.sendTask(nt)
		p.poll("the list drawn with the new task", fmt.Sprintf(`document.querySelectorAll('#tasks li').length === %d && document.querySelector('#filters .s-ALL').textContent === 'ALL %d'`, n, n), 10*time.Second)
	}
	focused := func() string {
		return eval[string](p, `document.activeElement.dataset.id || document.activeElement.className`)
	}

	eval[any](p, `document.querySelector('#filters .s-ALL').focus()`)
	arrives("01a23502-ebbb-7d62-a2d4-f7d07473aaaa", 2)
	if got := focused(); got != "chip filter s-ALL" {
		t.Fatalf("after the list was drawn anew the focus is on %q, want the ALL chip", got)
	}
	p.do("press Tab", 10*time.Second, press("Tab", "Tab", 9))
	if got, want := focused(), "01a23502-ebbb-7d62-a2d4-f7d07473aaaa"; got != want {
		t.Fatalf("after Tab from the last filter chip the focus is on %q, want the first task row %s", got, want)
	}
	p.do("press Tab", 10*time.Second, press("Tab", "Tab", 9))
	if got := focused(); got != pendingTask {
		t.Fatalf("after a second Tab the focus is on %q, want the task row %s", got, pendingTask)
	}
	arrives("01a23502-ebbb-7d62-a2d4-f7d07473bbbb", 3)
	if got := focused(); got != pendingTask {
		t.Fatalf("after the list was drawn anew the focus is on %q, want the task row %s", got, pendingTask)
	}
	p.do("press Enter", 10*time.Second, press("Enter", "Enter", 13))
	p.poll("the drawer of the task", `(document.getElementById('drawer-task-id') || {}).textContent === '`+pendingTask[len(pendingTask)-8:]+`'`, 10*time.Second)
	if s := p.consoleProblems(); s != "" {
		t.Errorf("the browser reported problems:%s", s)
	}
}

// TestFirstVisitLogsNoFailedRequest: opening the dashboard, or a tracking page, without a session shows
// the login form without asking the server first: the 401 that answer was logged in the browser console
// as an error ("Failed to load resource: … 401 (Unauthorized)") on every first visit.
func TestFirstVisitLogsNoFailedRequest(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{tasks: map[string]map[string]any{pendingTask: stubTask(pendingTask, "PENDING", "")}}
	base := startStub(t, s)
	for _, path := range []string{"/", "/track/" + pendingTask} {
		p := newPage(t, exe)
		p.do("open "+path, 30*time.Second,
			chromedp.Navigate(base+path),
			chromedp.WaitVisible(chromedp.CSS("#login-email")))
		if path == "/" {
			signIn(p, base)
			p.poll("the task in the list", `document.querySelectorAll('#tasks li').length === 1`, 10*time.Second)
		}
		p.mu.Lock()
		got := p.network
		p.mu.Unlock()
		if len(got) != 0 {
			t.Errorf("%s: the browser console reported failed requests:\n  %s", path, strings.Join(got, "\n  "))
		}
	}
}

// TestCountersAreNoLiveRegion: the top bar's counters are drawn anew every 5 s and at every task event; as
// a live region (aria-live) a screen reader read them all out again each time, drowning what matters. The
// connection state (role status) and the messages (toasts) are the page's live regions.
func TestCountersAreNoLiveRegion(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{tasks: map[string]map[string]any{pendingTask: stubTask(pendingTask, "PENDING", "")}}
	base := startStub(t, s)
	p := newPage(t, exe)
	signIn(p, base)
	got := eval[[]string](p, `[...document.querySelectorAll('[aria-live], [role=status], [role=alert], [role=log]')].filter((e) => e.id).map((e) => e.id)`)
	if want := "conn,login-error,busy,toasts"; strings.Join(got, ",") != want {
		t.Errorf("live regions = %q, want %q", strings.Join(got, ","), want)
	}
}

// TestLaptopAndTabletLayout: at 1,280 px and below the top bar's counters stayed on one line, pushing the
// connection state and Log out past the right edge (the page does not scroll: at 1,024 px the connection
// state was not visible at all), and an open drawer took 500 px beside the 340 px list (at 768 px the map
// was 0 px wide and the drawer ran off the screen). The counters wrap, and under 1,100 px the drawer lies
// over the map's right side.
func TestLaptopAndTabletLayout(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{tasks: map[string]map[string]any{pendingTask: stubTask(pendingTask, "PENDING", "")}}
	base := startStub(t, s)
	for _, size := range [][2]int64{{1280, 800}, {1024, 768}, {768, 1024}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			p := newPage(t, exe)
			p.do("resize", 10*time.Second, chromedp.EmulateViewport(size[0], size[1]))
			signIn(p, base)
			p.poll("the counters", `document.querySelector('#counters .counter') !== null`, 10*time.Second)
			w := int(size[0])
			inside := func(id string) {
				t.Helper()
				if r := eval[[]int](p, `(() => { const r = document.getElementById('`+id+`').getBoundingClientRect(); return [Math.round(r.left), Math.round(r.right)]; })()`); r[0] < 0 || r[1] > w {
					t.Errorf("#%s spans %v, outside the %d px window", id, r, w)
				}
			}
			if got := eval[int](p, `document.documentElement.scrollWidth`); got != w {
				t.Errorf("the page is %d px wide, want %d (the window)", got, w)
			}
			inside("conn")
			inside("logout")
			openTask(p, pendingTask)
			inside("drawer")
			if m := eval[int](p, `Math.round(document.getElementById('map').getBoundingClientRect().width)`); m < 400 {
				t.Errorf("with the drawer open the map is %d px wide, want at least 400", m)
			}
		})
	}
}

// TestCourierDrawerSaysTheAccountIsSuspended: a suspended courier keeps the courier service's status (BUSY
// with a picked-up parcel); the courier's drawer said nothing of the account, so a dispatcher could not
// tell that the task may be reassigned. It says "Account: suspended: may not work".
func TestCourierDrawerSaysTheAccountIsSuspended(t *testing.T) {
	exe := needBrowser(t)
	s := suspendedSamsTask()
	base := startStub(t, s)
	p := newPage(t, exe)
	signIn(p, base)
	openTask(p, pickedUpTask)
	eval[any](p, `document.querySelector('#drawer-body dd a').click()`)
	p.poll("the courier's drawer", `document.getElementById('drawer-courier') !== null`, 10*time.Second)
	got := eval[[]string](p, `[...document.querySelectorAll('#drawer-body dt')].map((dt) => dt.textContent + ': ' + dt.nextElementSibling.textContent)`)
	if !strings.Contains(strings.Join(got, "|"), "|Account: suspended: may not work|") {
		t.Errorf("the courier's facts = %q, want Account: suspended: may not work", got)
	}
	if s := p.consoleProblems(); s != "" {
		t.Errorf("the browser reported problems:%s", s)
	}
}

// TestBusyServerIsTriedAgain: a 429 or 503 answer failed the dashboard's call at once (a task's drawer did
// not open, with a message), though the server asks to come back. Such a call is tried again, up to 4
// times, after the answer's Retry-After or else after 1, 2, 4, 8 s, with a status line saying so; a
// Retry-After longer than 30 s is not waited for, and the message says when to try again.
func TestBusyServerIsTriedAgain(t *testing.T) {
	exe := needBrowser(t)
	const other = "01a23502-ebbb-7d62-a2d4-f7d07473cccc"
	s := &stubAPI{tasks: map[string]map[string]any{pendingTask: stubTask(pendingTask, "PENDING", ""), other: stubTask(other, "PENDING", "")}}
	base := startStub(t, s)
	p := newPage(t, exe)
	signIn(p, base)
	// Every text the status line shows, in order ("" when hidden).
	eval[any](p, `(() => { window.busyLog = []; const b = document.getElementById('busy');
		new MutationObserver(() => busyLog.push(b.hidden ? '' : b.textContent)).observe(b, {attributes: true, childList: true, characterData: true, subtree: true}); })()`)
	refuse := func(path string, rs ...refusal) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.refusals == nil {
			s.refusals = map[string][]refusal{}
		}
		s.refusals[path] = rs
		s.hits = map[string]int{}
	}
	hits := func(path string) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.hits[path]
	}
	log := func() []string {
		return eval[[]string](p, `(() => { const l = busyLog.filter((x, i) => x !== busyLog[i - 1]); busyLog = []; return l; })()`)
	}
	unavailable := refusal{status: 503, message: "service unavailable, retry later"}
	tooMany := refusal{status: 429, message: "too many requests", retryAfter: "1"}

	// Twice 503 without Retry-After, then the answer: waits of 1 s and 2 s.
	refuse("/v1/tasks/"+pendingTask, unavailable, unavailable)
	openTask(p, pendingTask)
	if got, want := log(), []string{
		"The server is unavailable (503: service unavailable, retry later). Trying again in 1 s (retry 1 of 4).", "",
		"The server is unavailable (503: service unavailable, retry later). Trying again in 2 s (retry 2 of 4).", ""}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the status line showed %q, want %q", got, want)
	}
	if n := hits("/v1/tasks/" + pendingTask); n != 3 {
		t.Errorf("GET /v1/tasks/{id} was asked %d times, want 3", n)
	}

	// 429 with Retry-After: 1 every time: tried 5 times, then the message.
	refuse("/v1/tasks/"+other, tooMany, tooMany, tooMany, tooMany, tooMany)
	eval[any](p, `document.querySelector('#tasks li[data-id="`+other+`"]').click()`)
	p.poll("the message", `LM.toasted.length === 1`, 20*time.Second)
	wantLog := []string{}
	for i := 1; i <= 4; i++ {
		wantLog = append(wantLog, fmt.Sprintf("The server is busy (429: too many requests). Trying again in 1 s (retry %d of 4).", i), "")
	}
	if got := log(); strings.Join(got, "|") != strings.Join(wantLog, "|") {
		t.Errorf("the status line showed %q, want %q", got, wantLog)
	}
	if got, want := eval[string](p, `LM.toasted[0]`), "too many requests (tried 5 times)"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
	if n := hits("/v1/tasks/" + other); n != 5 {
		t.Errorf("GET /v1/tasks/{id} was asked %d times, want 5", n)
	}

	// A Retry-After of 10 minutes: not waited for.
	refuse("/v1/tasks/"+other, refusal{status: 429, message: "too many requests", retryAfter: "600"})
	eval[any](p, `document.querySelector('#tasks li[data-id="`+other+`"]').click()`)
	p.poll("the message", `LM.toasted.length === 2`, 20*time.Second)
	if got, want := eval[string](p, `LM.toasted[1]`), "too many requests (wait 10 min)"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
	if got := log(); len(got) != 0 {
		t.Errorf("the status line showed %q, want nothing", got)
	}
	if n := hits("/v1/tasks/" + other); n != 1 {
		t.Errorf("GET /v1/tasks/{id} was asked %d times, want 1", n)
	}
	if s := p.consoleProblems(); s != "" {
		t.Errorf("the browser reported problems:%s", s)
	}
}

// TestMapAndCouriersByKeyboard: the map took the pointer only, so a keyboard user could neither open a
// courier nor assign a task nor create one. The side panel lists the couriers too (Tab reaches each,
// Enter opens it, or in assign mode, nearest to the pickup first, gives it the task), and the map itself
// takes the focus (visibly), pans with the arrows and opens with Enter what is under the cross in its
// middle, or sets a new task's pickup and dropoff there.
func TestMapAndCouriersByKeyboard(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{
		tasks: map[string]map[string]any{pendingTask: stubTask(pendingTask, "PENDING", "")},
		couriers: []map[string]any{stubCourier(courierA, "Zoe far away", "AVAILABLE", 52.5600, 13.5000),
			stubCourier(courierB, "Bea nearby", "AVAILABLE", 52.5205, 13.4055),
			stubCourier("01a23501-6310-7b97-bf5f-d3522ab30002", "Al offline", "OFFLINE", 52.5200, 13.4050)},
	}
	base := startStub(t, s)
	p := newPage(t, exe)
	signIn(p, base)
	p.poll("the task in the list", `document.querySelectorAll('#tasks li').length === 1`, 10*time.Second)
	names := func() string {
		return eval[string](p, `[...document.querySelectorAll('#couriers li .name')].map((n) => n.textContent).join(',')`)
	}
	focused := func() string {
		return eval[string](p, `(document.activeElement.id || document.activeElement.dataset.id || document.activeElement.tagName) + ' ' + (document.activeElement.getAttribute('aria-label') || document.activeElement.textContent)`)
	}
	key := func(what string, k string, n int) {
		t.Helper()
		for range n {
			p.do(what, 10*time.Second, chromedp.KeyEvent(k))
		}
	}

	// The couriers list: Tab from the search to the Couriers button, Enter, Tab to the first row, Enter.
	eval[any](p, `document.getElementById('search').focus()`)
	key("Tab to the Couriers button", "\t", 2)
	if got, want := focused(), "show-couriers Couriers"; got != want {
		t.Fatalf("focus on %q, want %q", got, want)
	}
	key("Enter", "\r", 1)
	key("Tab past the collapse button to the first courier", "\t", 2)
	if got, want := focused(), courierB+" Bea nearby, available, bicycle, 0 of 2 tasks"; got != want {
		t.Fatalf("focus on %q, want %q (couriers by status, then name)", got, want)
	}
	if got, want := names(), "Bea nearby,Zoe far away,Al offline"; got != want {
		t.Errorf("couriers = %q, want %q (by status, then name)", got, want)
	}
	key("Enter", "\r", 1)
	p.poll("Bea's drawer", `(document.querySelector('#drawer-courier h2') || {}).textContent === 'Bea nearby'`, 10*time.Second)

	// Assign by keyboard: the task's Assign button shows the couriers nearest first, the focus on the
	// nearest; Enter gives it the task.
	eval[any](p, `document.getElementById('show-tasks').click()`)
	openTask(p, pendingTask)
	eval[any](p, `[...document.querySelectorAll('#drawer-body .actions button')].find((b) => b.textContent === 'Assign to a courier…').focus()`)
	key("Enter on Assign", "\r", 1)
	if got, want := focused(), courierB+" Bea nearby, available, bicycle, 0 of 2 tasks, 0.1 km from the pickup"; got != want {
		t.Fatalf("focus on %q, want %q (the courier nearest to the pickup)", got, want)
	}
	if got, want := names(), "Bea nearby,Zoe far away,Al offline"; got != want {
		t.Errorf("couriers in assign mode = %q, want %q (those who can take the task, nearest first)", got, want)
	}
	key("Enter on Bea", "\r", 1)
	p.poll("the task ASSIGNED in the drawer", `document.querySelector('#drawer-body header .chip.s-ASSIGNED') !== null`, 10*time.Second)
	s.mu.Lock()
	calls := strings.Join(s.calls, "\n")
	s.mu.Unlock()
	if want := "POST /v1/tasks/" + pendingTask + `:assign {"courierId":"` + courierB + `","comment":"assigned from the dashboard"}`; calls != want {
		t.Errorf("the dashboard called\n%s\nwant\n%s", calls, want)
	}
	key("Esc closes the drawer", kb.Escape, 1)

	// The map: Tab reaches it (a visible outline), f frames Bea in its middle (with the task, which is
	// assigned now, Bea and the pickup are the points: the task is at Bea's place), Enter opens her.
	eval[any](p, `document.getElementById('show-couriers').click()`)
	eval[any](p, `document.querySelector('#couriers li:last-child').focus()`)
	key("Tab to the map", "\t", 1)
	if got := focused(); !strings.HasPrefix(got, "map Map of couriers and tasks") {
		t.Fatalf("focus on %q, want the map", got)
	}
	if got := eval[string](p, `getComputedStyle(document.getElementById('map')).outlineStyle`); got != "solid" {
		t.Errorf("the focused map's outline is %q, want solid", got)
	}
	s.mu.Lock()
	s.couriers = s.couriers[1:2] // Bea alone on the map for the next sign-in, without the task: f frames her
	s.tasks = map[string]map[string]any{}
	s.mu.Unlock()
	p2 := newPage(t, exe)
	signIn(p2, base)
	p2.poll("Bea on the map", `LM.debug.couriers().length === 1`, 10*time.Second)
	eval[any](p2, `document.getElementById('map').focus()`)
	key2 := func(what string, k string) { p2.do(what, 10*time.Second, chromedp.KeyEvent(k)) }
	// Enter on the map as a key press alone: a page that handles the keydown cancels it, and a browser
	// then sends no keypress (chromedp.KeyEvent would send one anyway, which would submit the new
	// task's form that took the focus meanwhile).
	enter2 := func(what string) { p2.do(what, 10*time.Second, press("Enter", "Enter", 13)) }
	focused2 := func() string { return eval[string](p2, `document.activeElement.id`) }
	key2("f fits the map to Bea", "f")
	key2("ArrowRight", kb.ArrowRight)
	enter2("Enter beside Bea")
	if got := eval[bool](p2, `document.getElementById('drawer').hidden`); !got {
		t.Errorf("Enter with the cross beside Bea opened the drawer")
	}
	key2("ArrowLeft", kb.ArrowLeft)
	enter2("Enter on Bea")
	p2.poll("Bea's drawer", `(document.querySelector('#drawer-courier h2') || {}).textContent === 'Bea nearby'`, 10*time.Second)

	// A new task by keyboard: n, the map, Enter for the pickup, an arrow, Enter for the dropoff.
	key2("Escape", kb.Escape)
	key2("n", "n")
	eval[any](p2, `document.getElementById('map').focus()`)
	enter2("Enter for the pickup")
	key2("ArrowDown", kb.ArrowDown)
	enter2("Enter for the dropoff")
	p2.poll("the new task's form", `document.getElementById('create-form') !== null`, 10*time.Second)
	if got := focused2(); got != "f-pickup" {
		t.Errorf("with the form open the focus is on %q, want the pickup address", got)
	}
	for _, pg := range []*page{p, p2} {
		if s := pg.consoleProblems(); s != "" {
			t.Errorf("the browser reported problems:%s", s)
		}
	}
}

// TestLongCourierNameStaysInTheDrawer: a courier's display name may be 100 characters, with words longer
// than a phone's drawer is wide; the drawer's heading ran past the screen's right edge and under the close
// button. It wraps, beside the button.
func TestLongCourierNameStaysInTheDrawer(t *testing.T) {
	exe := needBrowser(t)
	name := "Wolfeschlegelsteinhausenbergerdorff Wolfeschlegelsteinhausenbergerdorff Wolfeschlegelsteinhausenberg"
	if len(name) != 100 {
		t.Fatalf("the name is %d characters, want the longest allowed, 100", len(name))
	}
	s := &stubAPI{couriers: []map[string]any{stubCourier(courierA, name, "BUSY", 52.5210, 13.4080)}}
	base := startStub(t, s)
	for _, w := range []int64{390, 1440} {
		p := newPage(t, exe)
		p.do("resize", 10*time.Second, chromedp.EmulateViewport(w, 844))
		signIn(p, base)
		eval[any](p, `document.getElementById('show-couriers').click()`)
		p.poll("the courier in the list", `document.querySelector('#couriers li') !== null`, 10*time.Second)
		eval[any](p, `document.querySelector('#couriers li').click()`)
		p.poll("the courier's drawer", `document.getElementById('drawer-courier') !== null`, 10*time.Second)
		// The heading's right edge, the close button's left edge, the drawer's right edge, and whether
		// the heading's text overflows its box.
		got := eval[[]int](p, `(() => { const h = document.querySelector('#drawer-courier h2'), c = document.getElementById('close').getBoundingClientRect(), d = document.getElementById('drawer').getBoundingClientRect();
			return [Math.round(h.getBoundingClientRect().right), Math.round(c.left), Math.round(d.right), h.scrollWidth - h.clientWidth]; })()`)
		if got[0] > got[1] || got[0] > got[2] || got[3] > 0 || got[2] > int(w) {
			t.Errorf("at %d px: the heading ends at %d px (the close button starts at %d, the drawer ends at %d), its text overflows by %d px; want it inside the drawer, left of the button", w, got[0], got[1], got[2], got[3])
		}
	}
}

// TestSearchPlaceholderFits: with the Tasks / Couriers switch beside it, the search box's placeholder was
// cut off beside the 340 px list ("Search couriers  ( /"). It says what it searches, whole (the keys line
// under the list says that / goes there).
func TestSearchPlaceholderFits(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{couriers: []map[string]any{stubCourier(courierA, "Sam", "BUSY", 52.5210, 13.4080)}}
	base := startStub(t, s)
	for _, w := range []int64{1440, 390} {
		p := newPage(t, exe)
		p.do("resize", 10*time.Second, chromedp.EmulateViewport(w, 844))
		signIn(p, base)
		for _, list := range []string{"tasks", "couriers"} {
			eval[any](p, `document.getElementById('show-`+list+`').click()`)
			// The placeholder's width in the box's font, and the room for text in the box.
			got := eval[[]float64](p, `(() => { const i = document.getElementById('search'), cs = getComputedStyle(i), c = document.createElement('canvas').getContext('2d');
				c.font = cs.font; return [c.measureText(i.placeholder).width, i.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)]; })()`)
			if got[0] > got[1] {
				t.Errorf("at %d px, %s: the placeholder is %.0f px wide, the box has %.0f px for text", w, list, got[0], got[1])
			}
		}
	}
}

// TestMoreThanAThousandCouriersAreCounted: the dashboard read one page of couriers (1,000, ListCouriers'
// largest), so a fleet of more had its offline couriers undercounted in the top bar and missing from the
// couriers list. It reads every page.
func TestMoreThanAThousandCouriersAreCounted(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{}
	for i := range 1001 { // offline couriers: the event stream's snapshot holds none of them
		c := stubCourier(fmt.Sprintf("01a23501-6310-7b97-bf5f-d3522ab%05d", i), fmt.Sprintf("Courier %d", i), "OFFLINE", 52.52, 13.405)
		delete(c, "lastLocation")
		s.couriers = append(s.couriers, c)
	}
	base := startStub(t, s)
	p := newPage(t, exe)
	signIn(p, base)
	p.poll("the counters", `document.querySelector('#counters .counter') !== null`, 10*time.Second)
	eval[any](p, `document.getElementById('show-couriers').click()`)
	got := eval[[]string](p, `[[...document.querySelectorAll('#counters .counter')].map((c) => c.textContent).find((t) => t.endsWith('OFFLINE')), document.querySelectorAll('#couriers li').length + ' rows', document.getElementById('couriers-more').textContent]`)
	if want := []string{"1001 OFFLINE", "300 rows", "showing 300 of 1001 (search to narrow)"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("counter, rows, note = %q, want %q", got, want)
	}
}

// TestRetriesSpreadOut: calls refused together with the same Retry-After (the rate limit's answer to a
// burst) all came back together after exactly that long, to be refused together again; seen on a demo with
// a low --rate-limit-rps, where a dashboard's first calls used up their retries so. A Retry-After wait is up
// to a fifth longer, at random, as a backoff without one is up to a fifth shorter; nothing else is tried
// again.
func TestRetriesSpreadOut(t *testing.T) {
	exe := needBrowser(t)
	base := startStub(t, &stubAPI{})
	p := newPage(t, exe)
	signIn(p, base)
	got := eval[[]float64](p, `(() => { Math.random = () => 0.5;
		const e = (status, after) => Object.assign(new LM.ApiError(status, {error: {message: 'refused'}}), {retryAfter: after});
		return [LM.retryWait(e(429, 1), 1, '/v1/tasks'), LM.retryWait(e(503, 2), 4, '/v1/tasks'), LM.retryWait(e(503, -1), 1, '/v1/tasks'), LM.retryWait(e(429, -1), 3, '/v1/tasks'),
			LM.retryWait(e(429, 31), 1, '/v1/tasks'), LM.retryWait(e(503, -1), 5, '/v1/tasks'), LM.retryWait(e(503, 1), 1, '/v1/session/refresh'), LM.retryWait(e(500, 1), 1, '/v1/tasks'), LM.retryWait(e(400, 1), 1, '/v1/tasks')]; })()`)
	want := []float64{1100, 2200, 900, 3600, -1, -1, -1, -1, -1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("waits (ms) = %v, want %v", got, want)
	}
}

// TestClosedCourierDrawerStaysClosed: a courier's drawer answered after the dispatcher closed it (Esc)
// opened again over whatever they did next (seen in TestMapAndCouriersByKeyboard on a loaded machine: the
// new task's form never showed, the courier's drawer did). A late answer is dropped once the drawer was
// closed or something else opened.
func TestClosedCourierDrawerStaysClosed(t *testing.T) {
	exe := needBrowser(t)
	s := &stubAPI{couriers: []map[string]any{stubCourier(courierA, "Slow Sam", "AVAILABLE", 52.5210, 13.4080)}}
	base := startStub(t, s)
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release) // before the stub's server closes, which waits for the held request
	s.overviewGate.Store(&gate)
	p := newPage(t, exe)
	signIn(p, base)
	eval[any](p, `document.getElementById('show-couriers').click()`)
	p.poll("the courier in the list", `document.querySelector('#couriers li') !== null`, 10*time.Second)
	eval[any](p, `document.querySelector('#couriers li').click()`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) { // a hang guard
		n := s.overviewHeld.Load()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the drawer asked for the courier's overview %d times, want once", n)
		}
	}
	p.do("Esc", 10*time.Second, chromedp.KeyEvent(kb.Escape))
	release() // the server answers now, after the dispatcher closed the drawer
	// The page has its answer (the next request of the page's own fetch queue goes after it), then
	// a moment for a render that would follow it.
	eval[any](p, `fetch('/v1/couriers/`+courierA+`/overview').then(() => new Promise((r) => setTimeout(r, 300)))`)
	if hidden := eval[bool](p, `document.getElementById('drawer').hidden`); !hidden {
		t.Errorf("the courier's drawer opened after the dispatcher closed it: %q", eval[string](p, `document.getElementById('drawer-body').innerText`))
	}
}
