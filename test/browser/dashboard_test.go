// Package browser_test drives the dispatcher dashboard in headless Chromium (chromedp) against the whole
// system running in-process: `lastmile demo`, that is every service plus the simulator's couriers and
// customers. It does what a dispatcher does: log in, watch couriers move, create a task by clicking the
// map, follow it to DELIVERED, read its assignment explanation and look at its proof photo; then it opens
// the customer's tracking page with a share link. It takes a screenshot of the dashboard; with
// LASTMILE_UPDATE_SCREENSHOT=1 it writes it to docs/dashboard.png (the README's picture), otherwise to the
// test's temporary directory, so that a test run leaves the tree as it found it.
//
// The test skips when no Chromium or Chrome is installed, unless LASTMILE_REQUIRE_BROWSER is set (CI sets
// it, after installing Debian's chromium), in which case a missing browser fails it.
package browser_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"lastmile/internal/cli"
)

const (
	adminEmail    = "dispatch@example.com"
	adminPassword = "violet-kestrel-harbour-engine-51"
)

// browser finds a Chromium or Chrome executable, or "" when none is installed.
func browser() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startDemo runs `lastmile demo` in-process on :0 ports with a fresh data directory and returns the
// gateway's base URL. Its couriers ride fast (speedup) so that a delivery takes seconds, not minutes.
func startDemo(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan cli.Endpoints, 1)
	done := make(chan error, 1)
	env := map[string]string{"LASTMILE_ADMIN_EMAIL": adminEmail, "LASTMILE_ADMIN_PASSWORD": adminPassword}
	go func() {
		done <- cli.Run(ctx, []string{"lastmile", "demo",
			"--data-dir", t.TempDir(),
			"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
			"--shutdown-timeout", "5s", "--log-level", "warn",
			"--sim-couriers", "80", "--sim-rate", "1/s", "--sim-speedup", "20", "--sim-fix-interval", "500ms",
			"--sim-decline-ratio", "0", "--sim-modes", "bicycle,scooter,car",
		}, cli.Env{
			Getenv: func(k string) string { return env[k] },
			Stdout: io.Discard, Stderr: testWriter{t},
			Ready: func(e cli.Endpoints) { ready <- e },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("lastmile demo: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("lastmile demo did not stop within 30s of cancellation")
		}
	})
	select {
	case e := <-ready:
		return "http://" + e.HTTP
	case err := <-done:
		done <- err // for the cleanup, which would otherwise wait for an exit already seen
		t.Fatalf("lastmile demo exited before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("lastmile demo not ready within 60s")
	}
	return ""
}

// testWriter sends the process's logs to the test log, shown only when a test fails.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// page is one browser tab, with the problems its console reported: uncaught exceptions and the
// browser's security messages (a Content-Security-Policy violation among them).
type page struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
	network  []string // the browser's network errors (failed requests, such as a 401)
}

func newPage(t *testing.T, exe string) *page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.WindowSize(1440, 900),
		// Containers and CI run as root, where Chromium's sandbox cannot start.
		chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	p := &page{t: t, ctx: ctx}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1440, 900)); err != nil {
		t.Fatalf("start the browser (%s): %v", exe, err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.IsException() || m.Source == "security" {
				p.mu.Lock()
				p.problems = append(p.problems, m.String())
				p.mu.Unlock()
			}
			if m.Source == "network" {
				p.mu.Lock()
				p.network = append(p.network, m.String())
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// do runs actions, failing the test after timeout (a hang guard, not a performance assertion).
func (p *page) do(what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v%s%s", what, err, p.consoleProblems(), p.describe())
	}
}

// describe says what the page shows, for a failure message: the hint, the drawer and the toasts.
func (p *page) describe() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`['hint', 'drawer-body', 'toasts', 'login-error', 'headline']
		.map((id) => document.getElementById(id)).filter((e) => e && e.innerText).map((e) => e.id + ': ' + e.innerText)
		.concat(LM.toasted.map((t) => 'toast: ' + t)).join('\n')`))
	if err != nil {
		return "\n(the page cannot be read: " + err.Error() + ")"
	}
	return "\npage:\n" + s
}

// eval evaluates a JavaScript expression and decodes its value into T.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v%s", expr, err, p.consoleProblems())
	}
	return v
}

// poll waits until the expression is truthy.
func (p *page) poll(what, expr string, timeout time.Duration) {
	p.t.Helper()
	p.do(what, timeout+5*time.Second, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
}

func (p *page) consoleProblems() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.problems) == 0 {
		return ""
	}
	return "\nbrowser console:\n  " + strings.Join(p.problems, "\n  ")
}

type courier struct {
	ID     string  `json:"id"`
	Status string  `json:"status"`
	X      float64 `json:"x"` // world position (Web Mercator meters)
	Y      float64 `json:"y"`
	SX     float64 `json:"sx"` // where it is drawn, in CSS pixels of the map canvas
	SY     float64 `json:"sy"`
}

func TestDashboard(t *testing.T) {
	exe := browser()
	if exe == "" {
		if os.Getenv("LASTMILE_REQUIRE_BROWSER") != "" {
			t.Fatal("LASTMILE_REQUIRE_BROWSER is set but no chromium, chromium-browser or google-chrome is on PATH")
		}
		t.Skip("no Chromium or Chrome installed (set LASTMILE_REQUIRE_BROWSER=1 to make this a failure)")
	}
	base := startDemo(t)
	p := newPage(t, exe)

	// Log in.
	p.do("open the dashboard and log in", 60*time.Second,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#login-email")),
		chromedp.SendKeys(chromedp.CSS("#login-email"), adminEmail),
		chromedp.SendKeys(chromedp.CSS("#login-password"), adminPassword),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
	)
	if got, want := eval[string](p, `document.getElementById('who').textContent`), "Administrator"; got == "" {
		t.Errorf("the user menu shows %q after login, want a name such as %q", got, want)
	}

	// Couriers appear and move: some courier's drawn position changes.
	p.poll("couriers on the map", `LM.debug.couriers().length >= 10`, 60*time.Second)
	before := map[string]courier{}
	for _, c := range eval[[]courier](p, `LM.debug.couriers()`) {
		before[c.ID] = c
	}
	p.poll("a courier moves", fmt.Sprintf(`(() => { const b = %s; return LM.debug.couriers().some((c) => b[c.id] && Math.hypot(c.x - b[c.id][0], c.y - b[c.id][1]) > 1); })()`, positions(before)), 60*time.Second)

	// Create a task by clicking the map: the pickup beside an available courier who rides (a walker's
	// delivery takes minutes even sped up), the dropoff a little away. The drawer opens first (it narrows the map), then the courier is looked up where it is drawn,
	// where nothing (a toast, the hint, the legend) covers the two points to click.
	p.do("start a new task", 30*time.Second,
		chromedp.Click(chromedp.CSS("#new-task")),
		chromedp.WaitVisible(chromedp.CSS("#drawer-body")))
	const inView = `LM.debug.couriers().filter((c) => { const r = document.getElementById('map').getBoundingClientRect();
		const free = (dx, dy) => document.elementFromPoint(r.left + c.sx + dx, r.top + c.sy + dy) === document.getElementById('map');
		return c.status === 'AVAILABLE' && c.mode !== 'WALKING' && c.sx > 60 && c.sy > 80 && c.sx < r.width - 120 && c.sy < r.height - 80
			&& free(12, 12) && free(35, -10); })`
	// The courier found may be offered a task before it is read back: look again until one is read.
	var near courier
	for found := false; !found; {
		p.poll("an available courier in view", inView+`.length > 0`, 60*time.Second)
		if cs := eval[[]courier](p, inView); len(cs) > 0 {
			near, found = cs[0], true
		}
	}
	box := eval[[]float64](p, `(() => { const r = document.getElementById('map').getBoundingClientRect(); return [r.left, r.top]; })()`)
	p.do("create a task by clicking the map", 30*time.Second,
		chromedp.MouseClickXY(box[0]+near.SX+12, box[1]+near.SY+12),
		chromedp.MouseClickXY(box[0]+near.SX+35, box[1]+near.SY-10),
		chromedp.WaitVisible(chromedp.CSS("#create-form")),
		chromedp.Poll[chromedp.Void](`document.querySelector('#f-customer').value !== ''`, chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.SetValue(chromedp.CSS("#f-pickup"), "Browser test pickup, Alexanderplatz 1"),
		chromedp.SetValue(chromedp.CSS("#f-dropoff"), "Browser test dropoff, Karl-Marx-Allee 2"),
		chromedp.SetValue(chromedp.CSS("#f-notes"), "created by the browser test"),
		chromedp.Click(chromedp.CSS("#f-submit")),
		chromedp.WaitVisible(chromedp.CSS("#drawer-task-id")),
	)
	id := eval[string](p, `LM.debug.selected()`)
	if len(id) != 36 {
		t.Fatalf("the drawer shows task %q after creation, want a task id", id)
	}
	p.poll("the new task in the list", `(() => { const r = document.querySelector('#tasks li[data-id="`+id+`"] .route');
		return r && r.textContent === 'Browser test pickup, Alexanderplatz 1 → Browser test dropoff, Karl-Marx-Allee 2'; })()`, 10*time.Second)

	// The simulator's couriers take it: the drawer follows it to DELIVERED, and it leaves the list of open
	// tasks.
	p.poll("the new task reaches DELIVERED", `document.querySelector('#drawer-body header .chip.s-DELIVERED') !== null`, 8*time.Minute)
	p.poll("the delivered task leaves the open tasks", `document.querySelector('#tasks li[data-id="`+id+`"]') === null`, 10*time.Second)

	// Its explanation: a table per decision, newest first, the winner on top. A task has more than one
	// decision when an offer expired or was declined before a courier accepted (a loaded machine), so each
	// table is checked on its own.
	p.poll("the explanation table", `document.querySelector('table.explain tbody tr') !== null`, 30*time.Second)
	if got := eval[string](p, `document.querySelector('table.explain tbody tr').className`); got != "winner" {
		t.Errorf("the newest explanation's first row has class %q, want %q (the winner on top)", got, "winner")
	}
	want := []string{"Courier", "ETA", "Distance", "Load", "ETA sc.", "Dist. sc.", "Load sc.", "Fair sc.", "Total", "Excluded"}
	for i, got := range eval[[][]string](p, `[...document.querySelectorAll('table.explain')].map((table) => [...table.querySelectorAll('thead th')].map((th) => th.textContent))`) {
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("explanation %d columns = %v, want %v", i, got, want)
		}
	}

	// Its proof photo: the thumbnail loads (an image the browser decoded, served by GetProofContent).
	p.poll("the proof photo loads", `(() => { const i = document.querySelector('img.proof-photo'); return i && i.complete && i.naturalWidth > 0; })()`, 30*time.Second)
	src := eval[string](p, `document.querySelector('img.proof-photo').getAttribute('src')`)
	if !strings.HasPrefix(src, "/v1/tasks/"+id+"/proofs/") || !strings.HasSuffix(src, "/content") {
		t.Errorf("proof photo src = %q, want /v1/tasks/%s/proofs/{uploadId}/content", src, id)
	}

	// Keyboard moves: / focuses the search (and types nothing), Esc leaves it with the drawer still open.
	p.do("press /", 10*time.Second, press("/", "Slash", 191))
	if got := eval[string](p, `document.activeElement.id + ':' + document.getElementById('search').value`); got != "search:" {
		t.Errorf("after pressing /, focus and search = %q, want %q", got, "search:")
	}
	p.do("press Esc", 10*time.Second, press("Escape", "Escape", 27))
	if got := eval[string](p, `document.activeElement.id + ':' + document.getElementById('drawer').hidden`); got != ":false" {
		t.Errorf("after Esc in the search, focus and drawer hidden = %q, want %q", got, ":false")
	}

	saveScreenshot(t, p)

	// The share link opens the tracking page for anyone: a fresh browser without the session.
	p.do("share the tracking link", 30*time.Second,
		chromedp.Click(chromedp.CSS("#share")),
		chromedp.WaitVisible(chromedp.CSS(".share-url")))
	link := eval[string](p, `document.querySelector('.share-url').value`)
	if !strings.HasPrefix(link, base+"/track/"+id+"#shareToken=") {
		t.Fatalf("share link = %q, want %s/track/%s#shareToken=…", link, base, id)
	}
	anon := newPage(t, exe)
	anon.do("open the tracking page with the share link", 60*time.Second,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS(`#headline[data-state="DELIVERED"]`)))
	if got := eval[string](anon, `document.getElementById('headline').textContent`); got != "Delivered" {
		t.Errorf("tracking page headline = %q, want %q", got, "Delivered")
	}
	if got := eval[[]string](anon, `[...document.querySelectorAll('#steps li.done')].map((li) => li.textContent)`); strings.Join(got, ",") != "Ordered,Courier assigned,Picked up,Delivered" {
		t.Errorf("tracking page steps done = %v, want all four", got)
	}

	// A courier's drawer: click a courier on the map. It is clicked where it was drawn a moment before,
	// and a click selects a courier within 12 px: one that moved further meanwhile (a loaded machine
	// between the lookup and the click) is missed, and another courier is looked up and clicked. Each
	// click must select the courier it was aimed at or nothing else that is a courier.
	clickCourier(p, inView)
	if got := eval[string](p, `[...document.querySelectorAll('#drawer-body dt')].map((d) => d.textContent).join(',')`); got != "Transport,Capacity used,Last fix,Delivered today,Account,Id" {
		t.Errorf("courier drawer facts = %q", got)
	}

	// Search narrows the list (here to the delivered task, under the ALL filter); j selects its first task.
	// The filter chips are drawn again whenever a count changes, so the chip is clicked from the page's
	// own script: a node looked up first and clicked after may be gone by then.
	if !eval[bool](p, `(() => { const c = document.querySelector('#filters .s-ALL'); if (c) c.click(); return c !== null; })()`) {
		t.Fatalf("no ALL filter chip%s", p.describe())
	}
	p.do("search for the task", 30*time.Second,
		chromedp.SendKeys(chromedp.CSS("#search"), id[len(id)-8:]),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('#tasks li').length === 1`, chromedp.WithPollingTimeout(10*time.Second)),
		press("Escape", "Escape", 27),
		press("j", "KeyJ", 74),
		chromedp.WaitVisible(chromedp.CSS("#drawer-task-id")))
	if got := eval[string](p, `LM.debug.selected()`); got != id {
		t.Errorf("after searching for task %s and pressing j, the drawer shows %q", id, got)
	}

	for _, pg := range []*page{p, anon} {
		if s := pg.consoleProblems(); s != "" {
			t.Errorf("the browser reported problems:%s", s)
		}
	}
}

// clickCourier clicks a courier that inView lists where it is drawn until a click selects the courier it
// was aimed at and its drawer shows, trying again when the courier moved away before the click landed.
// 60 s and 20 clicks are hang guards: a click that selects the wrong courier, or no hit test at the
// courier's drawn position, fails every time.
func clickCourier(p *page, inView string) {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var missed []string
	// A courier no other is drawn near, so that the click cannot be meant for another one.
	alone := inView + `.filter((c) => LM.debug.couriers().every((o) => o.id === c.id || Math.hypot(o.sx - c.sx, o.sy - c.sy) > 30))`
	for attempt := 1; ; attempt++ {
		p.poll("a courier in view with no other near it", alone+`.length > 0`, 60*time.Second)
		k := eval[[]courier](p, alone)[0]
		box := eval[[]float64](p, `(() => { const r = document.getElementById('map').getBoundingClientRect(); return [r.left, r.top]; })()`)
		p.do("click a courier on the map", 30*time.Second, chromedp.MouseClickXY(box[0]+k.SX, box[1]+k.SY))
		// Where the courier is drawn now: a click more than 12 px away from it may miss it.
		now := eval[[]float64](p, fmt.Sprintf(`(() => { const c = LM.debug.couriers().find((c) => c.id === %q); return c ? [c.sx, c.sy] : [NaN, NaN]; })()`, k.ID))
		got := eval[string](p, `LM.debug.selected()`)
		if got == k.ID {
			p.do("open a courier's drawer from the map", 30*time.Second, chromedp.WaitVisible(chromedp.CSS("#drawer-courier")))
			return
		}
		moved := math.Hypot(now[0]-k.SX, now[1]-k.SY)
		if !(moved > 12) || attempt == 20 || time.Now().After(deadline) {
			p.t.Fatalf("clicked courier %s where it was drawn (it is %.1f px away from there now), the drawer shows %q; earlier misses: %v%s",
				k.ID, moved, got, missed, p.describe())
		}
		missed = append(missed, fmt.Sprintf("%s moved %.0f px", k.ID, moved))
		p.t.Logf("the click missed courier %s, which moved %.0f px meanwhile; clicking another one", k.ID, moved)
	}
}

// press sends one keystroke as a keyboard does: keydown (which a page may cancel, and with it the
// character) then keyup. chromedp.KeyEvent sends the character as a separate event that no handler can
// cancel, which a real keyboard never does.
func press(key, code string, keyCode int64) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		down := input.DispatchKeyEventParams{Type: input.DispatchKeyEventTypeKeyDown, Key: key, Code: code, WindowsVirtualKeyCode: keyCode, NativeVirtualKeyCode: keyCode}
		if len(key) == 1 {
			down.Text, down.UnmodifiedText = key, key
		}
		up := down
		up.Type, up.Text, up.UnmodifiedText = input.DispatchKeyEventTypeKeyUp, "", ""
		for _, ev := range []input.DispatchKeyEventParams{down, up} {
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, ev); err != nil {
				return fmt.Errorf("key %s: %w", key, err)
			}
		}
		return nil
	})
}

// positions renders couriers' world positions as a JavaScript object literal {id: [x, y]}.
func positions(cs map[string]courier) string {
	var b strings.Builder
	b.WriteString("{")
	for id, c := range cs {
		if math.IsNaN(c.X) || math.IsNaN(c.Y) {
			continue
		}
		fmt.Fprintf(&b, "%q:[%f,%f],", id, c.X, c.Y)
	}
	b.WriteString("}")
	return b.String()
}

// saveScreenshot writes the dashboard as the test left it to docs/dashboard.png, the README's picture, when
// LASTMILE_UPDATE_SCREENSHOT=1, and to the test's temporary directory otherwise.
func saveScreenshot(t *testing.T, p *page) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot: not a PNG (%d bytes)", len(png))
	}
	path := filepath.Join(t.TempDir(), "dashboard.png")
	if os.Getenv("LASTMILE_UPDATE_SCREENSHOT") == "1" {
		path = filepath.Join("..", "..", "docs", "dashboard.png")
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("save the screenshot: %v", err)
	}
	t.Logf("screenshot saved to %s (%d bytes)", path, len(png))
}
