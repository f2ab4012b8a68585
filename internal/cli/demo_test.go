package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/platform/telemetry/logtest"
	"lastmile/internal/simulator"
)

// TestDemoForABoundedTime runs `lastmile demo` with a 20 s simulation, short offer and wait timeouts and
// courier sessions that drop every few seconds (and resume from their cursor), then, with the services still up, checks through the public API that every task the customers created
// ended DELIVERED, CANCELLED or UNASSIGNABLE with a reason, that no task was ever held by two couriers
// (the simulator's watch over WatchTasks, and each task's history), and that nothing was logged at error
// level.
func TestDemoForABoundedTime(t *testing.T) {
	const email, password = "demo-admin@example.com", "demo test admin password, long enough"
	logs := &logtest.Buffer{}
	var stdout logtest.Buffer
	env := Env{
		Getenv: envOf(map[string]string{"LASTMILE_ADMIN_EMAIL": email, "LASTMILE_ADMIN_PASSWORD": password}),
		Stdout: &stdout, Stderr: logs,
	}
	dataDir := t.TempDir()
	cfg, d, err := parseDemo([]string{
		"--data-dir", dataDir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--log-level", "info", "--log-format", "json", "--shutdown-timeout", "5s",
		"--offer-timeout", "3s", "--dispatch-max-wait", "6s",
		"--sim-couriers", "12", "--sim-rate", "2", "--sim-duration", "10s", "--sim-drain", "150s",
		"--sim-radius", "700", "--sim-modes", "car", "--sim-speedup", "20", "--sim-decline-ratio", "0.2",
		"--sim-progress-interval", "5s", "--sim-drop-sessions", "8s",
	}, env)
	if err != nil {
		t.Fatalf("parseDemo: %v", err)
	}
	// Cars only, at up to 45 m/s (the simulator's cap, below what the courier service accepts): the longest
	// ride in the 700 m area (1.4 km to a pickup across it, then 350 m to the dropoff) takes 40 s, and the
	// drain ends as soon as no task is open. The demo's time goes into the rides, so the area is small and
	// the 20 tasks are ordered in 10 s; with --dispatch-max-wait 6s some of them wait longer than that for
	// a free courier and end UNASSIGNABLE, next to deliveries, declines and dropped sessions.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hang guard, not a timing assertion
	defer cancel()

	var checked bool
	stats, err := demo(ctx, cfg, d, env, func(ctx context.Context, ends Endpoints, stats *simulator.Stats) error {
		checked = true
		checkDemoTasks(ctx, t, dataDir, ends, email, password, stats)
		return nil
	})
	t.Log(stdout.String())
	if err != nil {
		t.Fatalf("demo = %v, want nil", err)
	}
	if !checked {
		t.Fatal("demo never ran the check after the simulation")
	}
	if got := stats.DoubleHolds.Load(); got != 0 {
		t.Errorf("tasks held by two couriers at once (simulator's WatchTasks) = %d, want 0", got)
	}
	if stats.Reconnects.Load() == 0 {
		t.Error("no session was reconnected, want the dropped sessions (--sim-drop-sessions) to reconnect")
	}
	if stats.Delivered.Load() == 0 || stats.ProofsUploaded.Load() == 0 || stats.CouriersReady.Load() != 12 {
		t.Errorf("delivered %d with %d proofs by %d ready couriers, want deliveries with proofs by all 12 couriers",
			stats.Delivered.Load(), stats.ProofsUploaded.Load(), stats.CouriersReady.Load())
	}
	if out := stdout.String(); !strings.Contains(out, "dashboard: http://127.0.0.1:") || !strings.Contains(out, "admin:     "+email) ||
		!strings.Contains(out, "simulation summary") {
		t.Errorf("demo's standard output = %q, want the dashboard URL, the admin and the summary", out)
	}
	if t.Failed() {
		t.Log(logs.String()) // the services' and the simulator's log, to see why
	}
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines := 0
	for sc.Scan() {
		line := sc.Text()
		var rec struct{ Level string }
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue // a progress line
		}
		lines++
		if rec.Level == "ERROR" {
			t.Errorf("error in the log: %s", line)
		}
	}
	if lines == 0 {
		t.Error("no JSON log line captured, want the services' log")
	}
}

// checkDemoTasks lists every task as the admin and checks how each of the simulation's ended.
func checkDemoTasks(ctx context.Context, t *testing.T, dataDir string, ends Endpoints, email, password string, stats *simulator.Stats) {
	t.Helper()
	tlsc, err := caTLS(dataDir + "/tls/ca.crt")
	if err != nil {
		t.Fatalf("CA: %v", err)
	}
	conn, err := grpc.NewClient(loopback(ends.GRPC), grpc.WithTransportCredentials(credentials.NewTLS(tlsc)))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	defer conn.Close()
	login, err := identityv1.NewAuthServiceClient(conn).Login(ctx, &identityv1.LoginRequest{
		Identifier: &identityv1.LoginRequest_Email{Email: email}, Password: password})
	if err != nil {
		t.Fatalf("admin Login: %v", err)
	}
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+login.GetAccessToken())
	client := dispatchv1.NewDispatchServiceClient(conn)
	var tasks []*dispatchv1.Task
	for token := ""; ; {
		page, err := client.ListTasks(actx, &dispatchv1.ListTasksRequest{PageSize: 500, PageToken: token, View: dispatchv1.TaskView_TASK_VIEW_FULL})
		if err != nil {
			t.Fatalf("ListTasks: %v", err)
		}
		tasks = append(tasks, page.GetTasks()...)
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if got, want := int64(len(tasks)), stats.TasksCreated.Load(); got != want || got == 0 {
		t.Fatalf("ListTasks found %d tasks, want the %d the customers created (and some)", got, want)
	}
	for _, task := range tasks {
		h := task.GetHistory()
		switch task.GetState() {
		case dispatchv1.TaskState_TASK_STATE_DELIVERED, dispatchv1.TaskState_TASK_STATE_CANCELLED:
		case dispatchv1.TaskState_TASK_STATE_UNASSIGNABLE:
			if len(h) == 0 || h[len(h)-1].GetComment() == "" {
				t.Errorf("task %s is UNASSIGNABLE without a reason: history %v", task.GetId(), h)
			}
		default:
			t.Errorf("task %s ended the demo %s, want DELIVERED, CANCELLED or UNASSIGNABLE", task.GetId(), task.GetState())
		}
		holders := map[string]bool{}
		for _, c := range h {
			switch c.GetState() {
			case dispatchv1.TaskState_TASK_STATE_ASSIGNED, dispatchv1.TaskState_TASK_STATE_PICKED_UP, dispatchv1.TaskState_TASK_STATE_DELIVERED:
				holders[c.GetCourierId()] = true
			}
		}
		if len(holders) > 1 {
			t.Errorf("task %s was held by %d couriers (history %v), want one", task.GetId(), len(holders), h)
		}
		if task.GetState() == dispatchv1.TaskState_TASK_STATE_DELIVERED && (len(holders) != 1 || task.GetCourierId() == "" || !holders[task.GetCourierId()]) {
			t.Errorf("delivered task %s: courier %q, holders %v; want the one courier who held it", task.GetId(), task.GetCourierId(), holders)
		}
	}
}

// TestDemoHelpSaysWhereTheAdminPasswordIsKept: the demo keeps the admin password it generated and prints
// it at each start, which its --admin-email help says, rather than serve's "generated and printed once".
func TestDemoHelpSaysWhereTheAdminPasswordIsKept(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"lastmile", "demo", "--help"}, Env{Stdout: &out}); err != nil {
		t.Fatalf("demo --help: %v", err)
	}
	const want = "  --admin-email            email of the admin account the demo creates and prints at each start (its password: " +
		"LASTMILE_ADMIN_PASSWORD, else generated on the first run and kept in <data-dir>/demo-admin-password)\n" +
		"        env LASTMILE_ADMIN_EMAIL, default admin@lastmile.local\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("demo --help lacks\n%s\ngot:\n%s", want, out.String())
	}
}
