package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// slowEstimate is a valid EstimateRoute body of 150 KB: the request padded with JSON whitespace, as a
// large request from a slow client would be. Its departure time is fixed so that every answer is the same.
func slowEstimate() []byte {
	const head = `{"origin": {"latitude": 52.52, "longitude": 13.405}, "destination": {"latitude": 52.4862, "longitude": 13.4247},`
	const tail = `"transportMode": "TRANSPORT_MODE_CAR", "departureTime": "2030-01-07T09:00:00Z"}`
	return []byte(head + strings.Repeat(" ", 150<<10-len(head)-len(tail)) + tail)
}

// TestSlowRESTRequestSurvivesShutdown is issue 7's repro (a 150 KB body sent at 30 KB/s to
// /v1/routes:estimate, SIGTERM two seconds in) with events instead of a clock: once the gateway is reading
// the body and half of it is sent, the process is told to stop, and the rest of the body follows only once
// the stop is under way (the overall health is NOT_SERVING and the REST listener refuses new connections). The request was accepted before
// the stop, so it must be answered in full: 200 with the same estimate as before the stop, not a 503
// because the gRPC server behind the gateway stopped first.
func TestSlowRESTRequestSurvivesShutdown(t *testing.T) {
	s := start(t)
	body := slowEstimate()

	// The answer to the same request, before any stop.
	code, want := postJSON(t, "http://"+s.HTTP+"/v1/routes:estimate", string(body))
	if code != http.StatusOK {
		t.Fatalf("POST /v1/routes:estimate = %d %v, want 200", code, want)
	}
	if got, wantKeys := slices.Sorted(maps.Keys(want)), []string{"departureTime", "distanceMeters", "duration", "provider", "transportMode"}; !slices.Equal(got, wantKeys) {
		t.Fatalf("estimate fields = %v, want %v", got, wantKeys)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := healthpb.NewHealthClient(s.grpcConn(t, "")).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health Watch: %v", err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first health status = %v, %v; want SERVING", resp.GetStatus(), err)
	}

	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.HTTP+"/v1/routes:estimate", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/json")
	// With "Expect: 100-continue" the client sends no byte of the body before the server's handler asks
	// for it, so the first write below returns only once the gateway is handling the request: the request
	// was accepted before the stop. (A server that is stopping drops requests it has not started to read.)
	req.Header.Set("Expect", "100-continue")
	type result struct {
		code int
		body []byte
		err  error
	}
	answered := make(chan result, 1)
	// A connection of its own, as curl's: the server closes idle keep-alive connections when it stops,
	// and one of those could be picked for this request.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, ExpectContinueTimeout: time.Minute}}
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			answered <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answered <- result{code: resp.StatusCode, body: b, err: err}
	}()
	half := len(body) / 2
	if _, err := pw.Write(body[:half]); err != nil { // returns once the client has taken it (after 100 Continue)
		t.Fatalf("send the first half of the body: %v", err)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	for {
		resp, err := watch.Recv()
		if err != nil {
			t.Fatalf("health Watch after stop: %v, want NOT_SERVING", err)
		}
		if resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
	}
	stopWatch() // an open watch would hold up the gRPC server's graceful stop

	waitRefused(t, s.HTTP)

	if _, err := pw.Write(body[half:]); err != nil {
		res := <-answered
		t.Fatalf("send the rest of the body: %v (answer: %d %q %v)", err, res.code, res.body, res.err)
	}
	pw.Close()
	var res result
	select {
	case res = <-answered:
	case <-ctx.Done():
		t.Fatal("no answer to the slow request")
	}
	if res.err != nil {
		t.Fatalf("slow POST /v1/routes:estimate during shutdown: %v, want 200", res.err)
	}
	var got map[string]any
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatalf("slow POST answered %d %q, not JSON: %v", res.code, res.body, err)
	}
	if res.code != http.StatusOK {
		t.Fatalf("slow POST /v1/routes:estimate during shutdown = %d %v, want 200", res.code, got)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("estimate answered during shutdown (-before +during):\n%s", diff)
	}
	if err := <-stopped; err != nil {
		t.Errorf("stop: %v, want a clean shutdown", err)
	}
}

// waitRefused waits until addr refuses new TCP connections.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections 20s after the stop began", addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
