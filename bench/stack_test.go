package bench_test

// What the platform's interceptor stack costs per call, against bare grpc-go, on one trivial unary RPC:
// route's EstimateRoute, answered by a fake handler that returns a constant estimate. That RPC rather than
// grpc_testing's EmptyCall because its request carries protovalidate rules (two required messages, four
// coordinate ranges, an enum): validation does the work it does in production instead of finding nothing
// to check, and the request and response are the size of lastmile's typical calls (~40 bytes each).
//
// The variants, each with its own server and client over real loopback TCP, created once per benchmark:
//
//   - bare: grpc.NewServer() without options, plaintext, grpc.NewClient with insecure credentials;
//   - stack: grpcserver.New as production configures it (request id, metrics, logging, error mapping,
//     recovery, authentication, authorization, rate limiting, validation, the otelgrpc stats handler with
//     a telemetry.SetupTracing provider that samples every trace and exports none, logs written at info
//     level through telemetry.NewLogger to io.Discard), plaintext, and a grpcclient.New client (service
//     config with round robin and health checking, retry policy, breaker, default deadline, client metrics
//     and tracing);
//   - stack_mtls: the same stack over mutual TLS with the development PKI, the client calling as the
//     "dispatch" service, so that TLS cost is separated from interceptor cost.
//
// Calls carry a background context: the stack's client gives them its default deadline (a timer per
// call, sent as grpc-timeout), which is part of its cost; the bare client sends none.

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcclient"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/telemetry"
	"lastmile/internal/platform/tlsutil"
)

// Names of the variants, in the order they are started and reported.
const (
	variantBare      = "bare"
	variantStack     = "stack"
	variantStackMTLS = "stack_mtls"
)

// neverLimit is the rate limit of the stack variants, in calls per second (the burst is as large): high
// enough never to refuse a call, so that the limiter's per-call work (a bucket lookup by principal and a
// token taken) is measured without its refusals.
const neverLimit = 1e9

// warmUpCalls is how many calls each variant makes before anything is measured: enough to establish
// the connection, grow the heap and fill the pools of grpc-go and protobuf.
const warmUpCalls = 3000

// The schedule of BenchmarkStackRatio: rounds of callsPerRound calls of each variant, the variants
// alternating inside each round. A round of one variant lasts a few hundred milliseconds, long enough
// for getrusage and ReadMemStats deltas to be precise; 20 rounds give a stable median.
const (
	ratioRounds        = 20
	ratioCallsPerRound = 2000
)

// estimateRequest is the request of every measured call: valid, so validation evaluates every rule and
// the handler runs. Marshalling only reads it, so concurrent calls may share it.
var estimateRequest = &routev1.EstimateRouteRequest{
	Origin:        &geov1.LatLng{Latitude: 52.52, Longitude: 13.40},
	Destination:   &geov1.LatLng{Latitude: 52.50, Longitude: 13.45},
	TransportMode: geov1.TransportMode_TRANSPORT_MODE_BICYCLE,
}

// fakeRoute answers EstimateRoute with a constant estimate, so that the measured cost is the transport
// and what surrounds the handler.
type fakeRoute struct {
	routev1.UnimplementedRouteServiceServer
}

func (fakeRoute) EstimateRoute(_ context.Context, req *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
	return &routev1.RouteEstimate{DistanceMeters: 4200, Provider: "fake", TransportMode: req.GetTransportMode()}, nil
}

// variant is one server and the client connected to it.
type variant struct {
	name   string
	client routev1.RouteServiceClient
}

// startVariants starts the three variants; tb's cleanup stops them.
func startVariants(tb testing.TB) []variant {
	tb.Helper()
	pki, err := tlsutil.EnsureDevPKI(filepath.Join(tb.TempDir(), "tls"), nil, "dispatch")
	if err != nil {
		tb.Fatal(err)
	}
	serverCert, serverKey := pki.ServerCert()
	serverTLS, err := tlsutil.ServerConfig(serverCert, serverKey, pki.CAFile())
	if err != nil {
		tb.Fatal(err)
	}
	clientCert, clientKey := pki.ClientCert("dispatch")
	clientTLS, err := tlsutil.ClientConfig(clientCert, clientKey, pki.CAFile())
	if err != nil {
		tb.Fatal(err)
	}
	return []variant{
		startBare(tb),
		startStack(tb, variantStack, nil, nil),
		startStack(tb, variantStackMTLS, serverTLS, clientTLS),
	}
}

func startBare(tb testing.TB) variant {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer()
	routev1.RegisterRouteServiceServer(srv, fakeRoute{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	tb.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			tb.Errorf("bare server: %v", err)
		}
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return connected(tb, variant{name: variantBare, client: routev1.NewRouteServiceClient(conn)})
}

// startStack starts a server and client configured as production configures them; nil TLS configs give
// plaintext.
func startStack(tb testing.TB, name string, serverTLS, clientTLS *tls.Config) variant {
	tb.Helper()
	// One logger, registry and tracer provider per variant, as a process has; the server and its client
	// share them like an all-in-one process does.
	logger := telemetry.NewLogger(io.Discard, telemetry.LogOptions{Level: slog.LevelInfo, Service: "bench"})
	reg := telemetry.NewRegistry()
	tp, shutdownTracing, err := telemetry.SetupTracing(context.Background(), telemetry.TracingConfig{ServiceName: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := shutdownTracing(context.Background()); err != nil {
			tb.Errorf("%s: shut down tracing: %v", name, err)
		}
	})

	srv, err := grpcserver.New(grpcserver.Config{
		Addr:      "127.0.0.1:0",
		TLS:       serverTLS,
		RateLimit: grpcserver.RateLimit{RPS: neverLimit},
		Policy: auth.Policy{
			routev1.RouteService_EstimateRoute_FullMethodName: auth.Public(),
			routev1.RouteService_ComputeMatrix_FullMethodName: auth.Public(),
		},
		Logger:         logger,
		Registerer:     reg,
		TracerProvider: tp,
	})
	if err != nil {
		tb.Fatal(err)
	}
	routev1.RegisterRouteServiceServer(srv.GRPC(), fakeRoute{})
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	tb.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			tb.Errorf("%s server: %v", name, err)
		}
	})

	conn, err := grpcclient.New(grpcclient.Config{
		Target:         srv.Addr().String(),
		TLS:            clientTLS,
		ServiceName:    routev1.RouteService_ServiceDesc.ServiceName,
		Logger:         logger,
		Registerer:     reg,
		TracerProvider: tp,
	})
	if err != nil {
		tb.Fatal(err)
	}
	// Registered last, so it runs first: the client goes away before the server drains.
	tb.Cleanup(func() { conn.Close() })
	return connected(tb, variant{name: name, client: routev1.NewRouteServiceClient(conn)})
}

// connected makes one call through v, so that a broken variant fails before anything is measured.
func connected(tb testing.TB, v variant) variant {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := v.client.EstimateRoute(ctx, estimateRequest); err != nil {
		tb.Fatalf("%s: first call: %v", v.name, err)
	}
	return v
}

// calls makes n calls through v, one after another.
func calls(ctx context.Context, v variant, n int) error {
	for range n {
		if _, err := v.client.EstimateRoute(ctx, estimateRequest); err != nil {
			return fmt.Errorf("%s: EstimateRoute: %w", v.name, err)
		}
	}
	return nil
}

func warmUp(b *testing.B, vs []variant) {
	b.Helper()
	for _, v := range vs {
		if err := calls(context.Background(), v, warmUpCalls); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVariants checks that each variant is what its name claims, so that the benchmarks compare what
// they say: the stack variants run the interceptor chain (a request id comes back and an invalid request
// is refused before the handler), the bare one does not, and only stack_mtls runs over TLS.
func TestVariants(t *testing.T) {
	byName := make(map[string]variant)
	for _, v := range startVariants(t) {
		byName[v.name] = v
	}
	invalid := &routev1.EstimateRouteRequest{
		Origin:        &geov1.LatLng{Latitude: 91, Longitude: 13.40},
		Destination:   &geov1.LatLng{Latitude: 52.50, Longitude: 13.45},
		TransportMode: geov1.TransportMode_TRANSPORT_MODE_BICYCLE,
	}
	tests := []struct {
		variant         string
		wantRequestID   bool
		wantTLS         bool
		wantInvalidCode codes.Code
	}{
		{variant: variantBare, wantRequestID: false, wantTLS: false, wantInvalidCode: codes.OK},
		{variant: variantStack, wantRequestID: true, wantTLS: false, wantInvalidCode: codes.InvalidArgument},
		{variant: variantStackMTLS, wantRequestID: true, wantTLS: true, wantInvalidCode: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.variant, func(t *testing.T) {
			v, ok := byName[tt.variant]
			if !ok {
				t.Fatalf("variant %q not started", tt.variant)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			var header metadata.MD
			var p peer.Peer
			got, err := v.client.EstimateRoute(ctx, estimateRequest, grpc.Header(&header), grpc.Peer(&p))
			if err != nil {
				t.Fatalf("EstimateRoute: %v", err)
			}
			if got.GetProvider() != "fake" || got.GetDistanceMeters() != 4200 {
				t.Errorf("EstimateRoute = %v, want the fake estimate (provider fake, 4200 m)", got)
			}
			if gotID := len(header.Get(grpcserver.RequestIDHeader)) == 1; gotID != tt.wantRequestID {
				t.Errorf("response header %s present = %t, want %t", grpcserver.RequestIDHeader, gotID, tt.wantRequestID)
			}
			if _, gotTLS := p.AuthInfo.(credentials.TLSInfo); gotTLS != tt.wantTLS {
				t.Errorf("connection over TLS = %t, want %t", gotTLS, tt.wantTLS)
			}

			_, err = v.client.EstimateRoute(ctx, invalid)
			if got := status.Code(err); got != tt.wantInvalidCode {
				t.Errorf("EstimateRoute(latitude 91) code = %v, want %v (err %v)", got, tt.wantInvalidCode, err)
			}
		})
	}
}

// BenchmarkUnary measures one variant after the other, one caller making calls back to back: latency
// bound, so ns/op is the round trip of one call. cpu-ns/op is the CPU time of the whole process (client,
// server, runtime) per call. Run it with -count and compare with benchstat; BenchmarkStackRatio is the
// interleaved measurement the ratios in BENCHMARKS.md come from.
func BenchmarkUnary(b *testing.B) {
	vs := startVariants(b)
	warmUp(b, vs)
	ctx := context.Background()
	for _, v := range vs {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				if _, err := v.client.EstimateRoute(ctx, estimateRequest); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkUnaryParallel is BenchmarkUnary with GOMAXPROCS callers at once on the one connection of each
// variant. Client and server share the machine's cores, so ns/op is the inverse of the throughput the
// whole process reaches when saturated, not a latency.
func BenchmarkUnaryParallel(b *testing.B) {
	vs := startVariants(b)
	warmUp(b, vs)
	ctx := context.Background()
	for _, v := range vs {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := v.client.EstimateRoute(ctx, estimateRequest); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// sample is what one variant cost over one round, per call.
type sample struct {
	wall, cpu, allocs, bytes float64
}

// measure makes n sequential calls through v and returns their cost per call. It collects garbage first,
// so that no variant pays for collecting another one's garbage; the collections its own allocations cause
// are part of its CPU time.
func measure(v variant, n int) (sample, error) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := processCPU()
	start := time.Now()
	if err := calls(context.Background(), v, n); err != nil {
		return sample{}, err
	}
	wall := time.Since(start)
	cpu = processCPU() - cpu
	runtime.ReadMemStats(&after)
	return sample{
		wall:   float64(wall.Nanoseconds()) / float64(n),
		cpu:    float64(cpu.Nanoseconds()) / float64(n),
		allocs: float64(after.Mallocs-before.Mallocs) / float64(n),
		bytes:  float64(after.TotalAlloc-before.TotalAlloc) / float64(n),
	}, nil
}

// BenchmarkStackRatio is the side-by-side measurement: after a warm-up, it runs ratioRounds rounds of
// ratioCallsPerRound sequential calls per variant, alternating the variants inside each round and
// rotating which goes first (bare stack mtls, stack mtls bare, ...) so that none always follows the same
// neighbour. Each round yields a ratio per metric; the reported ratio is the median over rounds, which a
// noisy round cannot move. The table is logged; the ratios are reported as metrics too.
//
// One benchmark op is the whole schedule (a few tens of seconds), so the framework runs it once: its
// ns/op, B/op and allocs/op are totals of the schedule, and the custom metrics are the result.
func BenchmarkStackRatio(b *testing.B) {
	vs := startVariants(b)
	warmUp(b, vs)
	samples := make(map[string][]sample, len(vs))
	for b.Loop() {
		for round := range ratioRounds {
			for i := range vs {
				v := vs[(round+i)%len(vs)]
				s, err := measure(v, ratioCallsPerRound)
				if err != nil {
					b.Fatal(err)
				}
				samples[v.name] = append(samples[v.name], s)
			}
		}
	}

	bare, stack, mtls := samples[variantBare], samples[variantStack], samples[variantStackMTLS]
	ratios := []struct {
		label, metric string
		num, den      []sample
	}{
		{"stack/bare", "stack/bare", stack, bare},
		{"stack_mtls/bare", "mtls/bare", mtls, bare},
		{"stack_mtls/stack", "mtls/stack", mtls, stack},
	}

	var out strings.Builder
	fmt.Fprintf(&out, "%d rounds x %d sequential calls per variant, interleaved; medians over rounds; CPU is the whole process (client + server + runtime)\n",
		len(bare), ratioCallsPerRound)
	w := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "variant\twall µs/call\tCPU µs/call\tallocs/call\tB/call\t")
	for _, v := range vs {
		s := samples[v.name]
		fmt.Fprintf(w, "%s\t%.1f\t%.1f\t%.0f\t%.0f\t\n", v.name,
			median(s, func(x sample) float64 { return x.wall / 1e3 }),
			median(s, func(x sample) float64 { return x.cpu / 1e3 }),
			median(s, func(x sample) float64 { return x.allocs }),
			median(s, func(x sample) float64 { return x.bytes }))
	}
	for _, r := range ratios {
		wall := medianRatio(r.num, r.den, func(x sample) float64 { return x.wall })
		cpu := medianRatio(r.num, r.den, func(x sample) float64 { return x.cpu })
		allocs := medianRatio(r.num, r.den, func(x sample) float64 { return x.allocs })
		bytes := medianRatio(r.num, r.den, func(x sample) float64 { return x.bytes })
		fmt.Fprintf(w, "%s\t%.2fx\t%.2fx\t%.2fx\t%.2fx\t\n", r.label, wall, cpu, allocs, bytes)
		b.ReportMetric(wall, r.metric+"-wall")
		b.ReportMetric(cpu, r.metric+"-cpu")
		b.ReportMetric(allocs, r.metric+"-allocs")
		b.ReportMetric(bytes, r.metric+"-B")
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	// Under ten lines, or the testing package truncates the log of a benchmark.
	b.Log(strings.TrimSuffix(out.String(), "\n"))
}

// median returns the median of f over samples.
func median(samples []sample, f func(sample) float64) float64 {
	vals := make([]float64, len(samples))
	for i, s := range samples {
		vals[i] = f(s)
	}
	return medianOf(vals)
}

// medianRatio returns the median over rounds of f(num[i]) / f(den[i]): each ratio compares two variants
// measured moments apart, which cancels drift of the machine over the run.
func medianRatio(num, den []sample, f func(sample) float64) float64 {
	vals := make([]float64, min(len(num), len(den)))
	for i := range vals {
		vals[i] = f(num[i]) / f(den[i])
	}
	return medianOf(vals)
}

func medianOf(vals []float64) float64 {
	if len(vals) == 0 {
		return 0
	}
	slices.SortFunc(vals, cmp.Compare)
	mid := len(vals) / 2
	if len(vals)%2 == 1 {
		return vals[mid]
	}
	return (vals[mid-1] + vals[mid]) / 2
}
