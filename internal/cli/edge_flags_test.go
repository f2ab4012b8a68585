package cli

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/platform/grpcserver"
)

func TestParseServeCORSOrigins(t *testing.T) {
	env := Env{Getenv: envOf(map[string]string{"LASTMILE_CORS_ORIGINS": "https://ops.example.com, http://localhost:3000"}), Stderr: &bytes.Buffer{}}
	cfg, err := parseServe(nil, env)
	if err != nil {
		t.Fatalf("parseServe: %v", err)
	}
	if diff := cmp.Diff([]string{"https://ops.example.com", "http://localhost:3000"}, cfg.Gateway.CORSOrigins); diff != "" {
		t.Errorf("CORSOrigins (-want +got):\n%s", diff)
	}

	cfg, err = parseServe(nil, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatalf("parseServe: %v", err)
	}
	if len(cfg.Gateway.CORSOrigins) != 0 {
		t.Errorf("default CORSOrigins = %q, want none", cfg.Gateway.CORSOrigins)
	}
}

func TestParseServeRejectsBadCORSOrigin(t *testing.T) {
	_, err := parseServe([]string{"--cors-origins", "*"}, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
	var ue usageError
	if !errors.As(err, &ue) {
		t.Fatalf("parseServe(--cors-origins=*) = %v, want a usage error", err)
	}
	if got, want := err.Error(), `--cors-origins: gateway: CORS origin "*" is not a lowercase scheme://host[:port] origin`; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

func TestParseServeRejectsDispatchJobWorkersOutOfRange(t *testing.T) {
	for _, v := range []string{"0", "-1", "10001"} {
		_, err := parseServe([]string{"--dispatch-job-workers", v}, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
		var ue usageError
		if !errors.As(err, &ue) {
			t.Fatalf("parseServe(--dispatch-job-workers=%s) = %v, want a usage error", v, err)
		}
		if got, want := err.Error(), "--dispatch-job-workers must be 1..10000, got "+v; got != want {
			t.Errorf("error = %q, want %q", got, want)
		}
	}
	if _, err := parseServe(nil, Env{Getenv: envOf(map[string]string{"LASTMILE_DISPATCH_JOB_WORKERS": "250"}), Stderr: &bytes.Buffer{}}); err != nil {
		t.Errorf("parseServe(LASTMILE_DISPATCH_JOB_WORKERS=250) = %v, want no error", err)
	}
}

func TestParseServeRejectsDispatchSessionBudgetOutOfRange(t *testing.T) {
	for flag, cases := range map[string]map[string]string{
		"--dispatch-session-rate": {
			"0": "--dispatch-session-rate must be above 0 and at most 1000, got 0", "-1": "--dispatch-session-rate must be above 0 and at most 1000, got -1",
			"NaN": "--dispatch-session-rate must be above 0 and at most 1000, got NaN", "1000.5": "--dispatch-session-rate must be above 0 and at most 1000, got 1000.5",
		},
		"--dispatch-session-burst": {
			"0": "--dispatch-session-burst must be 1..100000, got 0", "100001": "--dispatch-session-burst must be 1..100000, got 100001",
		},
		"--dispatch-max-retry-backoff": {
			"0s": "--dispatch-max-retry-backoff must be positive, got 0s", "25h": "--dispatch-max-retry-backoff must be at most 24h, got 25h0m0s",
		},
		"--dispatch-watch-send-timeout": {
			"0s": "--dispatch-watch-send-timeout must be positive, got 0s",
		},
		"--dispatch-session-send-timeout": {
			"0s": "--dispatch-session-send-timeout must be positive, got 0s",
		},
		"--dispatch-upload-idle-timeout": {
			"0s": "--dispatch-upload-idle-timeout must be positive, got 0s", "-1s": "--dispatch-upload-idle-timeout must be positive, got -1s",
		},
		"--dispatch-max-open-tasks": {
			"0": "--dispatch-max-open-tasks must be 1..1000000, got 0", "1000001": "--dispatch-max-open-tasks must be 1..1000000, got 1000001",
		},
	} {
		for v, want := range cases {
			_, err := parseServe([]string{flag, v}, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("parseServe(%s=%s) = %v, want a usage error", flag, v, err)
			}
			if got := err.Error(); got != want {
				t.Errorf("parseServe(%s=%s) error = %q, want %q", flag, v, got, want)
			}
		}
	}
	env := map[string]string{"LASTMILE_DISPATCH_SESSION_RATE": "0.5", "LASTMILE_DISPATCH_SESSION_BURST": "20", "LASTMILE_DISPATCH_MAX_OPEN_TASKS": "50", "LASTMILE_DISPATCH_MAX_RETRY_BACKOFF": "1m"}
	if _, err := parseServe(nil, Env{Getenv: envOf(env), Stderr: &bytes.Buffer{}}); err != nil {
		t.Errorf("parseServe(%v) = %v, want no error", env, err)
	}
}

// The watches' send timeout reaches their stream limits, with their fair shares of the pool.
func TestParseServeSetsTheWatchSendTimeout(t *testing.T) {
	c, err := parseServe([]string{"--dispatch-watch-send-timeout", "5s"}, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	limits := streamLimits(c.Modules, c.Targets)
	for _, m := range []string{dispatchv1.DispatchService_WatchTask_FullMethodName, dispatchv1.DispatchService_WatchTasks_FullMethodName} {
		if l := limits[m]; l.SendTimeout != 5*time.Second || l.Total != 1024 || l.StaffReserve != 64 || l.FirstReserve != 480 || l.Staff == nil {
			t.Errorf("limit of %s = %+v, want a 5s send timeout, 64 slots kept for staff and 480 for first watches of 1024", m, l)
		}
	}
	if l := limits[dispatchv1.DispatchService_StreamAssignments_FullMethodName]; l.SendTimeout != time.Minute || l.PerCaller != 2 {
		t.Errorf("StreamAssignments limit = %+v, want the default session send timeout of 1m and 2 per caller", l)
	}
}

// A proof download whose client stopped reading is ended after a minute, so that those who may read a
// proof cannot hold GetProofContent's slots (each with an open file) until their connections are recycled.
func TestParseServeEndsStalledProofDownloads(t *testing.T) {
	c, err := parseServe(nil, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	l := streamLimits(c.Modules, c.Targets)[dispatchv1.DispatchService_GetProofContent_FullMethodName]
	if l.SendTimeout != time.Minute || l.Idle != 0 || l.PerCaller > grpcserver.DefaultStreamsPerCaller || l.Total > grpcserver.DefaultStreamsTotal {
		t.Errorf("GetProofContent limit = %+v, want a send timeout of 1m within the default caps", l)
	}
}

// A courier session whose app stopped reading is ended too (a replaced one would otherwise hold one of
// the courier's two slots until its connection is recycled), after its own timeout.
func TestParseServeSetsTheSessionSendTimeout(t *testing.T) {
	c, err := parseServe([]string{"--dispatch-session-send-timeout", "45s"}, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	limits := streamLimits(c.Modules, c.Targets)
	if l := limits[dispatchv1.DispatchService_StreamAssignments_FullMethodName]; l.SendTimeout != 45*time.Second || l.PerCaller != 2 || l.Total != 20000 {
		t.Errorf("StreamAssignments limit = %+v, want a 45s send timeout, 2 per caller and 20000 in all", l)
	}
	if l := limits[dispatchv1.DispatchService_WatchTask_FullMethodName]; l.SendTimeout != 30*time.Second {
		t.Errorf("WatchTask send timeout = %s, want its own default of 30s", l.SendTimeout)
	}
}

// The uploads' idle timeout reaches UploadProof's stream limit, a minute unless set; no other stream is
// ended for idleness by it.
func TestParseServeSetsTheUploadIdleTimeout(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{{nil, time.Minute}, {[]string{"--dispatch-upload-idle-timeout", "45s"}, 45 * time.Second}} {
		c, err := parseServe(tc.args, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
		if err != nil {
			t.Fatal(err)
		}
		limits := streamLimits(c.Modules, c.Targets)
		if l := limits[dispatchv1.DispatchService_UploadProof_FullMethodName]; l.Idle != tc.want || l.PerCaller != 8 {
			t.Errorf("parseServe(%v): UploadProof limit = %+v, want idle %v and 8 per caller", tc.args, l, tc.want)
		}
		for _, m := range []string{dispatchv1.DispatchService_StreamAssignments_FullMethodName, dispatchv1.DispatchService_WatchTask_FullMethodName} {
			if l := limits[m]; l.Idle != 0 {
				t.Errorf("parseServe(%v): %s idle timeout = %v, want none", tc.args, m, l.Idle)
			}
		}
	}
}

func TestParseServeSaysWhatADurationLooksLike(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"flag", []string{"--sse-max-age", "5"}, nil,
			`invalid value "5" for flag -sse-max-age: not a duration: write a number with a unit, such as 500ms, 30s, 5m or 1h30m ('lastmile serve --help' lists the flags)`},
		{"environment", nil, map[string]string{"LASTMILE_OFFER_TIMEOUT": "20 seconds"},
			`LASTMILE_OFFER_TIMEOUT="20 seconds": not a duration: write a number with a unit, such as 500ms, 30s, 5m or 1h30m`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServe(tc.args, Env{Getenv: envOf(tc.env), Stderr: &bytes.Buffer{}})
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("parseServe = %v, want a usage error", err)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error = %q, want %q", got, tc.want)
			}
		})
	}
	cfg, err := parseServe([]string{"--sse-max-age", "90s"}, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatalf("parseServe: %v", err)
	}
	if cfg.Gateway.Browser.MaxEventStreamAge != 90*time.Second {
		t.Errorf("MaxEventStreamAge = %s, want 1m30s", cfg.Gateway.Browser.MaxEventStreamAge)
	}
}
