package bench_test

// REST through the gateway against the same RPC over direct gRPC, measured where it is paid: in the
// server process. BenchmarkRESTRatio starts a child process (this test binary, running TestRESTServer)
// holding what `lastmile serve` runs for one service: the gRPC server with the full stack over mutual TLS,
// route's EstimateRoute answered by the fake handler of stack_test.go, and two REST gateways: one wired to
// it as the all-in-one `lastmile serve` wires it (the server's in-process connection as the "gateway"
// identity: variant rest), one as a split deployment does (a grpcclient connection over TCP and mTLS as
// "gateway": variant rest_network). The benchmark process is only the load: a grpcclient connection calling
// as the "dispatch" service, and an HTTP/1.1 keep-alive client posting JSON to /v1/routes:estimate. The child
// reports its own CPU time (getrusage) and allocations (runtime.MemStats) on request, so the numbers are the
// server's alone, client excluded.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/gateway"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/cputime"
	"lastmile/internal/platform/grpcclient"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/telemetry"
	"lastmile/internal/platform/tlsutil"
)

// envRESTChild makes TestRESTServer run as the server of BenchmarkRESTRatio; its value is the PKI
// directory.
const envRESTChild = "LASTMILE_BENCH_REST_CHILD"

// restBody is estimateRequest in the gateway's JSON.
const restBody = `{"origin":{"latitude":52.52,"longitude":13.40},"destination":{"latitude":52.50,"longitude":13.45},"transportMode":"TRANSPORT_MODE_BICYCLE"}`

// TestRESTServer is the server process of BenchmarkRESTRatio; without envRESTChild it returns at once.
// It prints "ready <grpc address> <http address> <http address of the networked gateway>", then answers each line on stdin: "stats" with
// "<CPU ns> <mallocs> <bytes allocated>" after a garbage collection; end of input stops it.
func TestRESTServer(t *testing.T) {
	dir := os.Getenv(envRESTChild)
	if dir == "" {
		return
	}
	pki, err := tlsutil.EnsureDevPKI(dir, nil, "dispatch", "gateway")
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey := pki.ServerCert()
	serverTLS, err := tlsutil.ServerConfig(serverCert, serverKey, pki.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	gatewayCert, gatewayKey := pki.ClientCert("gateway")
	gatewayTLS, err := tlsutil.ClientConfig(gatewayCert, gatewayKey, pki.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	logger := telemetry.NewLogger(io.Discard, telemetry.LogOptions{Level: slog.LevelInfo, Service: "bench"})
	reg := telemetry.NewRegistry()
	tp, _, err := telemetry.SetupTracing(context.Background(), telemetry.TracingConfig{ServiceName: "bench", SampleRatio: telemetry.DefaultSampleRatio})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcserver.New(grpcserver.Config{
		Addr: "127.0.0.1:0", TLS: serverTLS, RateLimit: grpcserver.RateLimit{RPS: neverLimit},
		Policy: auth.Policy{
			routev1.RouteService_EstimateRoute_FullMethodName: auth.Public(),
			routev1.RouteService_ComputeMatrix_FullMethodName: auth.Public(),
		},
		Logger: logger, Registerer: reg, TracerProvider: tp,
	})
	if err != nil {
		t.Fatal(err)
	}
	routev1.RegisterRouteServiceServer(srv, fakeRoute{})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	conn, err := grpcclient.New(grpcclient.Config{
		Target: srv.Addr().String(), TLS: gatewayTLS, ServiceName: routev1.RouteService_ServiceDesc.ServiceName,
		Logger: logger, Registerer: reg, TracerProvider: tp,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	routes := gateway.Routes(routev1.RegisterRouteServiceHandlerClient, routev1.NewRouteServiceClient)
	gwDone := make(chan error, 2)
	var addrs []string
	for _, c := range []struct {
		conn grpc.ClientConnInterface
		reg  prometheus.Registerer
	}{{srv.InProcess("gateway"), reg}, {conn, telemetry.NewRegistry()}} {
		gw, err := gateway.New(ctx, gateway.Config{Addr: "127.0.0.1:0", Logger: logger, Registerer: c.reg},
			[]gateway.Service{{Name: routev1.RouteService_ServiceDesc.ServiceName, Conn: c.conn, Register: routes}})
		if err != nil {
			t.Fatal(err)
		}
		if err := gw.Listen(ctx); err != nil {
			t.Fatal(err)
		}
		go func() { gwDone <- gw.Serve(ctx) }()
		addrs = append(addrs, gw.Addr().String())
	}

	fmt.Printf("ready %s %s %s\n", srv.Addr(), addrs[0], addrs[1])
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() != "stats" {
			t.Fatalf("unknown command %q", in.Text())
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("%d %d %d\n", cputime.Process().Nanoseconds(), ms.Mallocs, ms.TotalAlloc)
	}
	stop()
	for range 2 {
		if err := <-gwDone; err != nil {
			t.Errorf("gateway: %v", err)
		}
	}
	if err := <-served; err != nil {
		t.Errorf("grpc server: %v", err)
	}
}

// restChild is the running server process.
type restChild struct {
	in  io.Writer
	out *bufio.Scanner
}

func (c *restChild) stats(b *testing.B) (cpu, mallocs, bytes float64) {
	b.Helper()
	if _, err := fmt.Fprintln(c.in, "stats"); err != nil {
		b.Fatal(err)
	}
	if !c.out.Scan() {
		b.Fatalf("server process: no stats: %v", c.out.Err())
	}
	if _, err := fmt.Sscan(c.out.Text(), &cpu, &mallocs, &bytes); err != nil {
		b.Fatalf("server process stats %q: %v", c.out.Text(), err)
	}
	return cpu, mallocs, bytes
}

// BenchmarkRESTRatio measures the server's CPU and allocations per call of EstimateRoute through the
// REST gateway and over direct gRPC, in interleaved rounds (see the file comment). One op is the whole
// schedule; the table printed is the result.
func BenchmarkRESTRatio(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "tls")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestRESTServer$", "-test.count", "1")
	cmd.Env = append(os.Environ(), envRESTChild+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("server process: %v", err)
		}
	})
	child := &restChild{in: stdin, out: bufio.NewScanner(stdout)}
	var grpcAddr, httpAddr, networkAddr string
	for child.out.Scan() {
		if f := strings.Fields(child.out.Text()); len(f) == 4 && f[0] == "ready" {
			grpcAddr, httpAddr, networkAddr = f[1], f[2], f[3]
			break
		}
	}
	if httpAddr == "" {
		b.Fatalf("server process did not start: %v", child.out.Err())
	}

	pki, err := tlsutil.EnsureDevPKI(dir, nil, "dispatch", "gateway")
	if err != nil {
		b.Fatal(err)
	}
	clientCert, clientKey := pki.ClientCert("dispatch")
	clientTLS, err := tlsutil.ClientConfig(clientCert, clientKey, pki.CAFile())
	if err != nil {
		b.Fatal(err)
	}
	conn, err := grpcclient.New(grpcclient.Config{Target: grpcAddr, TLS: clientTLS, ServiceName: routev1.RouteService_ServiceDesc.ServiceName,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	grpcVariant := variant{name: "grpc", client: routev1.NewRouteServiceClient(conn)}
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second}
	rest := func(addr string) func(int) error {
		return func(n int) error { return restCalls("http://"+addr+"/v1/routes:estimate", httpClient, n) }
	}
	run := map[string]func(int) error{
		"grpc":         func(n int) error { return calls(context.Background(), grpcVariant, n) },
		"rest":         rest(httpAddr),
		"rest_network": rest(networkAddr),
	}
	names := []string{"grpc", "rest", "rest_network"}
	for _, name := range names {
		if err := run[name](warmUpCalls); err != nil {
			b.Fatal(err)
		}
	}

	rounds, perRound := envRounds(b), 1000
	samples := map[string][]sample{}
	for b.Loop() {
		for round := range rounds {
			for i := range names {
				name := names[(round+i)%len(names)]
				cpu0, m0, b0 := child.stats(b)
				start := time.Now()
				if err := run[name](perRound); err != nil {
					b.Fatal(err)
				}
				wall := time.Since(start)
				cpu1, m1, b1 := child.stats(b)
				n := float64(perRound)
				samples[name] = append(samples[name], sample{
					wall: float64(wall.Nanoseconds()) / n, cpu: (cpu1 - cpu0) / n, allocs: (m1 - m0) / n, bytes: (b1 - b0) / n,
				})
			}
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%d rounds x %d sequential calls per variant, interleaved; medians over rounds; CPU and allocations of the server process only (gRPC server + gateway)\n", rounds, perRound)
	w := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "variant\twall µs\tserver CPU µs\tserver allocs\tserver B\tCPU ratio\tallocs ratio\tB ratio\t")
	for _, name := range names {
		s := samples[name]
		fmt.Fprintf(w, "%s\t%.1f\t%.1f\t%.0f\t%.0f\t%.2fx\t%.2fx\t%.2fx\t\n", name,
			median(s, func(x sample) float64 { return x.wall / 1e3 }),
			median(s, func(x sample) float64 { return x.cpu / 1e3 }),
			median(s, func(x sample) float64 { return x.allocs }),
			median(s, func(x sample) float64 { return x.bytes }),
			medianRatio(s, samples["grpc"], func(x sample) float64 { return x.cpu }),
			medianRatio(s, samples["grpc"], func(x sample) float64 { return x.allocs }),
			medianRatio(s, samples["grpc"], func(x sample) float64 { return x.bytes }))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	fmt.Print(out.String())
	b.ReportMetric(medianRatio(samples["rest"], samples["grpc"], func(x sample) float64 { return x.cpu }), "rest/grpc-server-cpu")
	b.ReportMetric(medianRatio(samples["rest"], samples["grpc"], func(x sample) float64 { return x.allocs }), "rest/grpc-server-allocs")
	b.ReportMetric(medianRatio(samples["rest_network"], samples["grpc"], func(x sample) float64 { return x.cpu }), "rest_network/grpc-server-cpu")
}

// restCalls posts restBody to url n times, one after the other, and checks each answer.
func restCalls(url string, client *http.Client, n int) error {
	for range n {
		resp, err := client.Post(url, "application/json", bytes.NewReader([]byte(restBody)))
		if err != nil {
			return fmt.Errorf("rest: %w", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"provider":"fake"`)) {
			return fmt.Errorf("rest: %d %s: %v", resp.StatusCode, body, err)
		}
	}
	return nil
}
