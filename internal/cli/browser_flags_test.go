package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/gateway"
)

func TestParseServeBrowserFlags(t *testing.T) {
	cfg, err := parseServe(nil, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	want := gateway.BrowserConfig{
		Heartbeat: gateway.DefaultEventHeartbeat, EventWriteTimeout: gateway.DefaultEventWriteTimeout, MaxEventStreamAge: gateway.DefaultMaxEventStreamAge,
		MaxEventStreams: gateway.DefaultMaxEventStreams, MaxEventStreamsPerUser: gateway.DefaultMaxEventStreamsPerUser,
	}
	if diff := cmp.Diff(want, cfg.Gateway.Browser); diff != "" {
		t.Errorf("default Browser (-want +got):\n%s", diff)
	}

	cfg, err = parseServe([]string{"--sse-max-streams", "50", "--sse-max-streams-per-user", "2", "--sse-heartbeat", "5s",
		"--sse-write-timeout", "3s", "--sse-max-age", "5m", "--cookie-secure"}, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	want = gateway.BrowserConfig{Heartbeat: 5 * time.Second, EventWriteTimeout: 3 * time.Second, MaxEventStreamAge: 5 * time.Minute,
		MaxEventStreams: 50, MaxEventStreamsPerUser: 2, SecureCookies: true}
	if diff := cmp.Diff(want, cfg.Gateway.Browser); diff != "" {
		t.Errorf("Browser (-want +got):\n%s", diff)
	}

	const msg = "--sse-max-streams, --sse-max-streams-per-user, --sse-heartbeat, --sse-write-timeout and --sse-max-age must be positive"
	for _, args := range [][]string{
		{"--sse-max-streams", "0"}, {"--sse-max-streams-per-user", "-1"}, {"--sse-heartbeat", "0s"}, {"--sse-write-timeout", "-1s"},
		{"--sse-max-age", "0s"},
	} {
		if _, err := parseServe(args, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}}); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("parseServe(%q) error = %v, want %q", args, err, msg)
		}
	}
}
