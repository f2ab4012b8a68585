package e2e_test

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"lastmile/internal/cli"
)

// TestSimulateAgainstASplitDeployment runs `lastmile simulate` as an operator would against a split
// deployment: identity, route, courier and dispatch each in a process of its own (their own data
// directories, one development CA, peers by address), the simulator told where each service is with
// --identity-addr, --courier-addr, --route-addr and --dispatch-addr. Its couriers get ready, take offers
// from dispatch over their sessions, and deliver every task its customers created within the drain.
func TestSimulateAgainstASplitDeployment(t *testing.T) {
	dataDir := t.TempDir()
	identity := startEnv(t, dataDir, map[string]string{"LASTMILE_ADMIN_EMAIL": adminEmail, "LASTMILE_ADMIN_PASSWORD": adminPassword},
		"--target", "identity")
	route := startIn(t, sharedCA(t, dataDir), "--target", "route", "--identity-addr", identity.GRPC)
	courier := startIn(t, sharedCA(t, dataDir), "--target", "courier", "--identity-addr", identity.GRPC)
	dispatch := startIn(t, sharedCA(t, dataDir), "--target", "dispatch", "--identity-addr", identity.GRPC,
		"--courier-addr", courier.GRPC, "--route-addr", route.GRPC)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a hang guard, not a timing assertion
	defer cancel()
	var out bytes.Buffer
	err := cli.Run(ctx, []string{"lastmile", "simulate", "--ca-file", filepath.Join(dataDir, "tls", "ca.crt"), "--admin-email", adminEmail,
		// Nothing listens at the target: every service is called at its own address.
		"--target", "127.0.0.1:1",
		"--identity-addr", identity.GRPC, "--courier-addr", courier.GRPC, "--route-addr", route.GRPC, "--dispatch-addr", dispatch.GRPC,
		"--couriers", "2", "--rate", "1", "--duration", "2s", "--drain", "2m", "--wait-couriers",
		"--radius", "300", "--modes", "car", "--speedup", "20", "--decline-ratio", "0", "--log-level", "debug"},
		cli.Env{Getenv: func(k string) string { return map[string]string{"LASTMILE_ADMIN_PASSWORD": adminPassword}[k] }, Stdout: &out, Stderr: testWriter{t}})
	t.Log(out.String())
	if err != nil {
		t.Fatalf("simulate against the split deployment = %v", err)
	}
	count := func(re string) int {
		m := regexp.MustCompile(re).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("summary lacks %q", re)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	ready, created, delivered := count(`couriers ready +(\d+)`), count(`tasks created +(\d+)`), count(`delivered +(\d+)`)
	open, doubles := count(`still open (\d+)`), count(`double holds (\d+)`)
	if ready != 2 || created == 0 || delivered != created || open != 0 || doubles != 0 {
		t.Errorf("couriers ready %d, tasks created %d, delivered %d, still open %d, double holds %d; want 2 couriers delivering every task created, none held twice",
			ready, created, delivered, open, doubles)
	}
}
