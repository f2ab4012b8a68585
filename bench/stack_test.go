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
//   - stack: grpcserver.New as production configures it (tracing, request id, metrics, logging, error
//     mapping, recovery, authentication, authorization, rate limiting, validation; tracing through a
//     telemetry.SetupTracing provider sampling telemetry.DefaultSampleRatio of new traces and exporting none,
//     logs written at info level through telemetry.NewLogger to io.Discard), plaintext, and a grpcclient.New
//     client (tracing, service config with round robin and health checking, retry policy, breaker, default
//     deadline, client metrics);
//   - stack_mtls: the same stack over mutual TLS with the development PKI, the client calling as the
//     "dispatch" service, so that TLS cost is separated from interceptor cost;
//   - stack_sampled: stack with every new trace sampled;
//   - stack-<stage>: stack less one stage (the ablations below), for BenchmarkStackRatio.
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
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
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
	"lastmile/internal/platform/cputime"
	"lastmile/internal/platform/database/databasetest"
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
// and what surrounds the handler. With work set, each call first runs it (the realistic handler).
type fakeRoute struct {
	routev1.UnimplementedRouteServiceServer
	work func(context.Context) error
}

func (f fakeRoute) EstimateRoute(ctx context.Context, req *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
	if f.work != nil {
		if err := f.work(ctx); err != nil {
			return nil, err
		}
	}
	return &routev1.RouteEstimate{DistanceMeters: 4200, Provider: "fake", TransportMode: req.GetTransportMode()}, nil
}

// variant is one server and the client connected to it.
type variant struct {
	name   string
	client routev1.RouteServiceClient
}

// stackSpec describes a stack variant: production's configuration less what the ablations leave out.
type stackSpec struct {
	name                 string
	serverTLS, clientTLS *tls.Config
	server               grpcserver.Ablation
	client               grpcclient.Ablation
	noRateLimit          bool
	sampleRatio          float64                     // of new traces; 0 is production's, telemetry.DefaultSampleRatio
	work                 func(context.Context) error // the handler's work; nil answers at once
}

// ablations are the stack variants of BenchmarkStackRatio that leave one stage out each, in the order
// they are reported. Each stage's cost is the stack's cost less its variant's. "tracing" leaves out the
// stats handler of both ends and "metrics" the metrics of both ends; "deadline" and "client_extras"
// (breaker, retry policy, health checking) are the client's; "instrumentation" leaves out tracing,
// metrics and logging together, and "all" every stage the others name: what is left is grpc-go with
// production's options and a request id. The variants joined by "+" leave out the stages a user depends
// on in pairs and threes (the trace context, the default deadline, the log line), to find which of them
// would have to go for the stack to reach issue 11's CPU target.
var ablations = []stackSpec{
	{name: "-tracing", server: grpcserver.Ablation{Tracing: true}, client: grpcclient.Ablation{Tracing: true}},
	{name: "-metrics", server: grpcserver.Ablation{Metrics: true}, client: grpcclient.Ablation{Metrics: true}},
	{name: "-logging", server: grpcserver.Ablation{Logging: true}},
	{name: "-authentication", server: grpcserver.Ablation{Authentication: true}},
	{name: "-rate_limit", noRateLimit: true},
	{name: "-validation", server: grpcserver.Ablation{Validation: true}},
	{name: "-deadline", client: grpcclient.Ablation{Deadline: true}},
	{name: "-client_extras", client: grpcclient.Ablation{Extras: true}},
	{name: "-tracing+deadline", server: grpcserver.Ablation{Tracing: true}, client: grpcclient.Ablation{Tracing: true, Deadline: true}},
	{name: "-tracing+logging", server: grpcserver.Ablation{Tracing: true, Logging: true}, client: grpcclient.Ablation{Tracing: true}},
	{name: "-logging+deadline", server: grpcserver.Ablation{Logging: true}, client: grpcclient.Ablation{Deadline: true}},
	{name: "-tracing+logging+deadline", server: grpcserver.Ablation{Tracing: true, Logging: true},
		client: grpcclient.Ablation{Tracing: true, Deadline: true}},
	{name: "-instrumentation", server: grpcserver.Ablation{Tracing: true, Metrics: true, Logging: true},
		client: grpcclient.Ablation{Tracing: true, Metrics: true}},
	{name: "-all", noRateLimit: true,
		server: grpcserver.Ablation{Tracing: true, Metrics: true, Logging: true, Authentication: true, Validation: true},
		client: grpcclient.Ablation{Tracing: true, Metrics: true, Deadline: true, Extras: true}},
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
		startBare(tb, variantBare, nil),
		startStack(tb, stackSpec{name: variantStack}),
		startStack(tb, stackSpec{name: variantStackMTLS, serverTLS: serverTLS, clientTLS: clientTLS}),
	}
}

func startBare(tb testing.TB, name string, work func(context.Context) error) variant {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer()
	routev1.RegisterRouteServiceServer(srv, fakeRoute{work: work})
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
	return connected(tb, variant{name: name, client: routev1.NewRouteServiceClient(conn)})
}

// startStack starts a server and client configured as production configures them, less spec's
// ablations; nil TLS configs give plaintext.
func startStack(tb testing.TB, spec stackSpec) variant {
	tb.Helper()
	name := spec.name
	// One logger, registry and tracer provider per variant, as a process has; the server and its client
	// share them like an all-in-one process does.
	logger := telemetry.NewLogger(io.Discard, telemetry.LogOptions{Level: slog.LevelInfo, Service: "bench"})
	reg := telemetry.NewRegistry()
	tp, shutdownTracing, err := telemetry.SetupTracing(context.Background(), telemetry.TracingConfig{
		ServiceName: "bench", SampleRatio: cmp.Or(spec.sampleRatio, telemetry.DefaultSampleRatio)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := shutdownTracing(context.Background()); err != nil {
			tb.Errorf("%s: shut down tracing: %v", name, err)
		}
	})
	limit := grpcserver.RateLimit{RPS: neverLimit}
	if spec.noRateLimit {
		limit = grpcserver.RateLimit{}
	}

	srv, err := grpcserver.New(grpcserver.Config{
		Addr:      "127.0.0.1:0",
		TLS:       spec.serverTLS,
		RateLimit: limit,
		Policy: auth.Policy{
			routev1.RouteService_EstimateRoute_FullMethodName: auth.Public(),
			routev1.RouteService_ComputeMatrix_FullMethodName: auth.Public(),
		},
		Logger:         logger,
		Registerer:     reg,
		TracerProvider: tp,
		Ablation:       spec.server,
	})
	if err != nil {
		tb.Fatal(err)
	}
	routev1.RegisterRouteServiceServer(srv.GRPC(), fakeRoute{work: spec.work})
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
		TLS:            spec.clientTLS,
		ServiceName:    routev1.RouteService_ServiceDesc.ServiceName,
		Logger:         logger,
		Registerer:     reg,
		TracerProvider: tp,
		Ablation:       spec.client,
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
			cpu := cputime.Process()
			for b.Loop() {
				if _, err := v.client.EstimateRoute(ctx, estimateRequest); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/op")
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
			cpu := cputime.Process()
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
			b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// sample is what one variant cost over one round, per call.
type sample struct {
	wall, cpu, allocs, bytes, switches float64
}

// measure makes n sequential calls through v and returns their cost per call. It collects garbage first,
// so that no variant pays for collecting another one's garbage; the collections its own allocations cause
// are part of its CPU time.
func measure(v variant, n int) (sample, error) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	switches := processSwitches()
	cpu := cputime.Process()
	start := time.Now()
	if err := calls(context.Background(), v, n); err != nil {
		return sample{}, err
	}
	wall := time.Since(start)
	cpu = cputime.Process() - cpu
	switches = processSwitches() - switches
	runtime.ReadMemStats(&after)
	return sample{
		wall:     float64(wall.Nanoseconds()) / float64(n),
		cpu:      float64(cpu.Nanoseconds()) / float64(n),
		allocs:   float64(after.Mallocs-before.Mallocs) / float64(n),
		bytes:    float64(after.TotalAlloc-before.TotalAlloc) / float64(n),
		switches: float64(switches) / float64(n),
	}, nil
}

// BenchmarkStackRatio is the side-by-side measurement, and the ablation: bare, stack, stack_mtls and one
// stack variant per entry of ablations (stack less one stage). After a warm-up, it runs ratioRounds
// rounds of ratioCallsPerRound sequential calls per variant, alternating the variants inside each round
// and rotating which goes first, so that none always follows the same neighbour. Each round yields a
// ratio per metric; the reported ratio is the median over rounds, which a noisy round cannot move. A
// stage's cost is the median over rounds of stack less its ablation variant, both measured moments apart.
//
// LASTMILE_STACK_VARIANTS (a comma list of names, such as "bare,stack") runs a subset, for quick
// before/after runs of one lever; LASTMILE_STACK_ROUNDS changes the number of rounds.
//
// One benchmark op is the whole schedule (a minute or more), so the framework runs it once: its ns/op,
// B/op and allocs/op are totals of the schedule; the table printed and the custom metrics are the result.
func BenchmarkStackRatio(b *testing.B) {
	vs := startVariants(b)
	vs = append(vs, startStack(b, stackSpec{name: variantStack + "_sampled", sampleRatio: 1}))
	for _, spec := range ablations {
		spec.name = variantStack + spec.name
		vs = append(vs, startStack(b, spec))
	}
	vs = selectVariants(b, vs)
	runRatio(b, vs, envRounds(b), ratioCallsPerRound)
}

// storeRows is the size of the table the realistic handler scans: about 1 ms of SQLite work per call on
// a 2-core EPYC of 2026.
const storeRows = 5000

// storeRead returns a handler's work standing for a store read of about 1 ms: an aggregate over a
// SQLite table (pure Go, in the process, like the services' SQLite stores) that no index serves.
func storeRead(tb testing.TB) func(context.Context) error {
	tb.Helper()
	db := databasetest.SQLite(tb)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE fixes (id INTEGER PRIMARY KEY, courier TEXT NOT NULL, lat REAL NOT NULL, lng REAL NOT NULL)`); err != nil {
		tb.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range storeRows {
		if _, err := tx.ExecContext(ctx, `INSERT INTO fixes (courier, lat, lng) VALUES (?, ?, ?)`,
			fmt.Sprintf("c-%d", i%500), 52.4+float64(i%1000)/5000, 13.3+float64(i%997)/5000); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return func(ctx context.Context) error {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM fixes WHERE lat BETWEEN 52.45 AND 52.50 AND lng BETWEEN 13.35 AND 13.40 AND courier <> 'c-7'`).Scan(&n)
		if err != nil {
			return fmt.Errorf("read fixes: %w", err)
		}
		return nil
	}
}

// BenchmarkStackRatioStore is BenchmarkStackRatio for a realistic handler: one store read of about 1 ms
// (storeRead) per call, through bare grpc-go and through the stack, interleaved the same way with fewer
// calls per round.
func BenchmarkStackRatioStore(b *testing.B) {
	work := storeRead(b)
	vs := []variant{
		startBare(b, variantBare+"_store", work),
		startStack(b, stackSpec{name: variantStack + "_store", work: work}),
	}
	runRatio(b, vs, envRounds(b), 300)
}

func envRounds(b *testing.B) int {
	b.Helper()
	v := os.Getenv("LASTMILE_STACK_ROUNDS")
	if v == "" {
		return ratioRounds
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("LASTMILE_STACK_ROUNDS=%q: want a positive integer", v)
	}
	return n
}

// selectVariants keeps the variants LASTMILE_STACK_VARIANTS names, in their order; all when it is unset.
func selectVariants(b *testing.B, vs []variant) []variant {
	b.Helper()
	names := os.Getenv("LASTMILE_STACK_VARIANTS")
	if names == "" {
		return vs
	}
	var out []variant
	for name := range strings.SplitSeq(names, ",") {
		i := slices.IndexFunc(vs, func(v variant) bool { return v.name == strings.TrimSpace(name) })
		if i < 0 {
			b.Fatalf("LASTMILE_STACK_VARIANTS: no variant %q", name)
		}
		out = append(out, vs[i])
	}
	return out
}

// runRatio warms vs up, measures them in interleaved rounds and prints the table: per variant its median
// cost per call, its ratios to the first variant (the baseline) and, for variants named after the
// second with a suffix, what the second costs more than them (the cost of the stage they leave out).
func runRatio(b *testing.B, vs []variant, rounds, perRound int) {
	b.Helper()
	warmUp(b, vs)
	samples := make(map[string][]sample, len(vs))
	for b.Loop() {
		for round := range rounds {
			for i := range vs {
				v := vs[(round+i)%len(vs)]
				s, err := measure(v, perRound)
				if err != nil {
					b.Fatal(err)
				}
				samples[v.name] = append(samples[v.name], s)
			}
		}
	}

	base := samples[vs[0].name]
	var full []sample
	if len(vs) > 1 {
		full = samples[vs[1].name]
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%d rounds x %d sequential calls per variant, interleaved; medians over rounds; CPU is the whole process (client + server + runtime); ratios to %s; stage = %s less the variant\n",
		rounds, perRound, vs[0].name, vs[min(1, len(vs)-1)].name)
	w := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "variant\twall µs\tCPU µs\tallocs\tB\tswitches\tCPU ratio\tallocs ratio\tB ratio\tstage CPU µs\tstage allocs\tstage B\t")
	for i, v := range vs {
		s := samples[v.name]
		fmt.Fprintf(w, "%s\t%.1f\t%.1f\t%.0f\t%.0f\t%.2f\t%.2fx\t%.2fx\t%.2fx\t", v.name,
			median(s, func(x sample) float64 { return x.wall / 1e3 }),
			median(s, func(x sample) float64 { return x.cpu / 1e3 }),
			median(s, func(x sample) float64 { return x.allocs }),
			median(s, func(x sample) float64 { return x.bytes }),
			median(s, func(x sample) float64 { return x.switches }),
			medianRatio(s, base, func(x sample) float64 { return x.cpu }),
			medianRatio(s, base, func(x sample) float64 { return x.allocs }),
			medianRatio(s, base, func(x sample) float64 { return x.bytes }))
		if i > 1 && strings.HasPrefix(v.name, vs[1].name+"-") {
			fmt.Fprintf(w, "%.1f\t%.0f\t%.0f\t\n",
				medianDiff(full, s, func(x sample) float64 { return x.cpu / 1e3 }),
				medianDiff(full, s, func(x sample) float64 { return x.allocs }),
				medianDiff(full, s, func(x sample) float64 { return x.bytes }))
		} else {
			fmt.Fprint(w, "\t\t\t\n")
		}
		if i > 0 {
			b.ReportMetric(medianRatio(s, base, func(x sample) float64 { return x.cpu }), v.name+"/"+vs[0].name+"-cpu")
			b.ReportMetric(medianRatio(s, base, func(x sample) float64 { return x.allocs }), v.name+"/"+vs[0].name+"-allocs")
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	// Printed rather than logged: a benchmark's log is cut short.
	fmt.Print(out.String())
}

// medianDiff returns the median over rounds of f(a[i]) - f(b[i]).
func medianDiff(a, b []sample, f func(sample) float64) float64 {
	vals := make([]float64, min(len(a), len(b)))
	for i := range vals {
		vals[i] = f(a[i]) - f(b[i])
	}
	return medianOf(vals)
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
