package telemetry_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"lastmile/internal/platform/telemetry"
)

var buckets = []float64{.001, .01, .1, 1}

// fakeServerStream receives two messages, then io.EOF.
type fakeServerStream struct {
	grpc.ServerStream
	left int
}

func (s *fakeServerStream) Context() context.Context { return context.Background() }
func (s *fakeServerStream) SendMsg(any) error        { return nil }
func (s *fakeServerStream) RecvMsg(any) error {
	if s.left == 0 {
		return io.EOF
	}
	s.left--
	return nil
}

// fakeClientStream answers two messages, then io.EOF.
type fakeClientStream struct {
	grpc.ClientStream
	left int
}

func (s *fakeClientStream) SendMsg(any) error { return nil }
func (s *fakeClientStream) RecvMsg(any) error {
	if s.left == 0 {
		return io.EOF
	}
	s.left--
	return nil
}

// calls makes the same calls through a set of interceptors: unary calls that succeed, fail with a status
// and fail with a context error, a client stream and a server stream, on both ends.
func calls(t *testing.T, su grpc.UnaryServerInterceptor, ss grpc.StreamServerInterceptor, cu grpc.UnaryClientInterceptor, cs grpc.StreamClientInterceptor) {
	t.Helper()
	ctx := context.Background()
	info := &grpc.UnaryServerInfo{FullMethod: "/lastmile.route.v1.RouteService/EstimateRoute"}
	for _, err := range []error{nil, status.Error(codes.NotFound, "no"), context.DeadlineExceeded, errors.New("plain")} {
		_, _ = su(ctx, "req", info, func(context.Context, any) (any, error) { return "resp", err })
		_ = cu(ctx, info.FullMethod, "req", "reply", nil, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return err })
	}
	sinfo := &grpc.StreamServerInfo{FullMethod: "/lastmile.courier.v1.CourierService/ReportLocations", IsClientStream: true}
	_ = ss(nil, &fakeServerStream{left: 2}, sinfo, func(_ any, s grpc.ServerStream) error {
		for s.RecvMsg(nil) == nil {
		}
		return s.SendMsg("ack")
	})
	desc := &grpc.StreamDesc{StreamName: "WatchTask", ServerStreams: true}
	stream, err := cs(ctx, desc, nil, "/lastmile.dispatch.v1.DispatchService/WatchTask", func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		return &fakeClientStream{left: 2}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.SendMsg("req")
	for stream.RecvMsg(nil) == nil {
	}
}

// families gathers reg, dropping what differs between two runs of the same calls: creation times,
// histogram sums and bucket counts (durations).
func families(t *testing.T, reg *prometheus.Registry) []*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				c.CreatedTimestamp = nil
			}
			if h := m.GetHistogram(); h != nil {
				h.CreatedTimestamp = nil
				h.SampleSum = nil
				for _, b := range h.GetBucket() {
					b.CumulativeCount = nil
				}
			}
		}
	}
	return mfs
}

// TestGRPCMetricsMatchTheProvider checks that GRPCServerMetrics and GRPCClientMetrics expose the same
// series, with the same help, types, labels and counts, as go-grpc-middleware's prometheus provider that
// they replace, for the same calls, and after InitializeMetrics.
func TestGRPCMetricsMatchTheProvider(t *testing.T) {
	theirs := prometheus.NewRegistry()
	psm := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(buckets)))
	pcm := grpcprom.NewClientMetrics(grpcprom.WithClientHandlingTimeHistogram(grpcprom.WithHistogramBuckets(buckets)))
	theirs.MustRegister(psm, pcm)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	psm.InitializeMetrics(srv)
	calls(t, psm.UnaryServerInterceptor(), psm.StreamServerInterceptor(), pcm.UnaryClientInterceptor(), pcm.StreamClientInterceptor())

	ours := prometheus.NewRegistry()
	sm := telemetry.NewGRPCServerMetrics(buckets, nil)
	cm := telemetry.NewGRPCClientMetrics(buckets, nil)
	ours.MustRegister(sm, cm)
	sm.InitializeMetrics(srv)
	calls(t, sm.UnaryServerInterceptor(), sm.StreamServerInterceptor(), cm.UnaryClientInterceptor(), cm.StreamClientInterceptor())

	want, got := families(t, theirs), families(t, ours)
	if len(got) == 0 {
		t.Fatal("no metric families gathered")
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b *dto.MetricFamily) bool { return a.String() == b.String() })); diff != "" {
		var w, g strings.Builder
		for _, mf := range want {
			w.WriteString(mf.String() + "\n")
		}
		for _, mf := range got {
			g.WriteString(mf.String() + "\n")
		}
		t.Errorf("metric families differ from go-grpc-middleware's:\nwant:\n%s\ngot:\n%s", w.String(), g.String())
	}
}

// TestGRPCServerMetricsExemplarOnHistogramOnly checks that a call's exemplar lands on its latency
// observation and on no counter.
func TestGRPCServerMetricsExemplarOnHistogramOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	sm := telemetry.NewGRPCServerMetrics(buckets, func(context.Context) prometheus.Labels {
		return prometheus.Labels{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
	})
	reg.MustRegister(sm)
	info := &grpc.UnaryServerInfo{FullMethod: "/lastmile.route.v1.RouteService/EstimateRoute"}
	if _, err := sm.UnaryServerInterceptor()(context.Background(), "req", info, func(context.Context, any) (any, error) { return "resp", nil }); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exemplars := map[string]int{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetCounter().GetExemplar() != nil {
				exemplars[mf.GetName()]++
			}
			for _, b := range m.GetHistogram().GetBucket() {
				if ex := b.GetExemplar(); ex != nil {
					exemplars[mf.GetName()]++
					if got := ex.GetLabel()[0].GetValue(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
						t.Errorf("exemplar trace_id = %q", got)
					}
				}
			}
		}
	}
	if diff := cmp.Diff(map[string]int{"grpc_server_handling_seconds": 1}, exemplars); diff != "" {
		t.Errorf("exemplars by family (-want +got):\n%s", diff)
	}
}
