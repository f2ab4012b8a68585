package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lastmile/internal/platform/telemetry/logtest"
)

// running is a serve command running in this process.
type running struct {
	Endpoints
	cancel context.CancelFunc
	done   chan error
	logs   *logtest.Buffer // what the command wrote to standard error
}

// startServe runs `lastmile serve args...` (route only, without TLS, on free loopback ports unless args
// say otherwise) until it is ready, and stops it when the test ends if the test has not.
func startServe(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	ready := make(chan Endpoints, 1)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	full := append([]string{"lastmile", "serve", "--target", "route", "--insecure",
		"--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, args...)
	logs := &logtest.Buffer{}
	r.logs = logs
	go func() {
		r.done <- Run(ctx, full, Env{Getenv: envOf(env), Stderr: logs, Ready: func(e Endpoints) { ready <- e }})
	}()
	select {
	case r.Endpoints = <-ready:
	case err := <-r.done:
		cancel()
		t.Fatalf("serve %q = %v before it was ready; logs:\n%s", args, err, logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("serve %q not ready within 30 s; logs:\n%s", args, logs)
	}
	// Ready comes once the listeners are bound; /readyz answers 200 once the gRPC server serves. A stop
	// in between makes Serve fail ("Serve called twice or after Close"), which is not what these tests
	// are about.
	for i := 0; ; i++ {
		if status, _ := get(t, "http://"+r.Admin+"/readyz"); status == http.StatusOK {
			break
		}
		if i == 3000 {
			cancel()
			t.Fatalf("serve %q: /readyz not 200 within 30 s; logs:\n%s", args, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("serve %q stopped with %v, want nil", args, err)
		}
	})
	return r
}

// stop cancels the command and waits for Run to return; later calls return nil.
func (r *running) stop() error {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("serve did not stop within 30 s")
	}
}

// TestServeLocksDataDir checks that a data directory serves one process: while one serve runs, a second
// serve (with PostgreSQL too, whose data directory still holds the CA and keys), migrate and certs on
// that directory fail at once, naming it and the holder's pid; once the first stops, a new serve starts.
func TestServeLocksDataDir(t *testing.T) {
	dir := t.TempDir()
	first := startServe(t, nil, "--data-dir", dir)

	held := fmt.Sprintf("lock data directory %s: held by pid %d (lastmile serve); a data directory belongs to one lastmile process at a time: ", dir, os.Getpid())
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"serve", []string{"serve", "--target", "route", "--insecure", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"},
			"serve: " + held + "stop that process, or give this one its own --data-dir"},
		// The database is never reached: the lock comes first.
		{"serve with PostgreSQL", []string{"serve", "--database-url", "postgres://lastmile@127.0.0.1:1/lastmile", "--grpc-addr", "127.0.0.1:0",
			"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"},
			"serve: " + held + "stop that process, or give this one its own --data-dir"},
		{"migrate", []string{"migrate"},
			"migrate: " + held + "stop it first (serve migrates at startup unless --auto-migrate=false)"},
		{"certs", []string{"certs"},
			"certs: " + held + "stop it first (serve creates and renews the certificates at startup)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			args := append(append([]string{"lastmile"}, tt.args...), "--data-dir", dir)
			err := Run(ctx, args, Env{Stdout: io.Discard, Stderr: io.Discard})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("%s on a served directory = %v,\nwant %s", tt.name, err, tt.want)
			}
			if got := ExitCode(err); got != 1 {
				t.Errorf("ExitCode = %d, want 1", got)
			}
		})
	}
	// Nothing the refused commands did touched the directory: only the lock file and the holder's state.
	if _, err := os.Stat(filepath.Join(dir, "tls")); !os.IsNotExist(err) {
		t.Errorf("refused certs left %s/tls (stat error %v), want none", dir, err)
	}

	if err := first.stop(); err != nil {
		t.Fatalf("first serve stopped with %v, want nil", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "LOCK")); err != nil || len(b) != 0 {
		t.Errorf("LOCK after serve stopped = %q, %v; want an empty file", b, err)
	}
	again := startServe(t, nil, "--data-dir", dir)
	if err := again.stop(); err != nil {
		t.Errorf("second serve stopped with %v, want nil", err)
	}
}

// TestServeAdminPprof checks that pprof is off on the admin address unless --admin-pprof (or
// LASTMILE_ADMIN_PPROF) asks for it, and that /metrics answers either way.
func TestServeAdminPprof(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		wantPprof int
	}{
		{"default", nil, nil, http.StatusNotFound},
		{"flag", nil, []string{"--admin-pprof"}, http.StatusOK},
		{"env", map[string]string{"LASTMILE_ADMIN_PPROF": "true"}, nil, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServe(t, tt.env, append([]string{"--data-dir", t.TempDir()}, tt.args...)...)
			for path, want := range map[string]int{"/debug/pprof/": tt.wantPprof, "/metrics": http.StatusOK, "/healthz": http.StatusOK} {
				if got, _ := get(t, "http://"+s.Admin+path); got != want {
					t.Errorf("GET %s = %d, want %d", path, got, want)
				}
			}
		})
	}
}

// get GETs url on a connection of its own and returns the status code and the body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// TestServeHelpExplainsAdminExposure checks that --help says what the admin address exposes, where,
// and that pprof is opt-in.
func TestServeHelpExplainsAdminExposure(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"lastmile", "serve", "--help"}, Env{Stdout: &out}); err != nil {
		t.Fatalf("serve --help: %v", err)
	}
	for _, want := range []string{
		"plain HTTP without authentication, on every interface by default so that scrapers and probes reach it: keep it off public networks",
		"env LASTMILE_ADMIN_ADDR, default :9091",
		"env LASTMILE_ADMIN_PPROF, default false",
		"locked (LOCK) while serve runs, so each process needs its own",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("serve --help lacks %q:\n%s", want, out.String())
		}
	}
}
