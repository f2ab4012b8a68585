package cli

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
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
