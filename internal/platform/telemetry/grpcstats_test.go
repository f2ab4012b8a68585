package telemetry

import (
	"context"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// setup returns a provider of SetupTracing sampling new traces at ratio.
func setup(t *testing.T, ratio float64) trace.TracerProvider {
	t.Helper()
	tp, shutdown, err := SetupTracing(context.Background(), TracingConfig{ServiceName: "test", SampleRatio: ratio})
	if err != nil {
		t.Fatalf("SetupTracing: %v", err)
	}
	t.Cleanup(func() {
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return tp
}

const method = "/lastmile.route.v1.RouteService/EstimateRoute"

// serverSpan runs a unary call with incoming metadata md through the server interceptor and returns the
// span its handler saw.
func serverSpan(t *testing.T, tp trace.TracerProvider, md metadata.MD) trace.Span {
	t.Helper()
	unary, _ := GRPCServerTracing(tp)
	var span trace.Span
	_, err := unary(metadata.NewIncomingContext(context.Background(), md), "req", &grpc.UnaryServerInfo{FullMethod: method},
		func(ctx context.Context, _ any) (any, error) {
			span = trace.SpanFromContext(ctx)
			return "resp", nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return span
}

func TestGRPCTracingSamplingOnlyWithARatio(t *testing.T) {
	for name, tp := range map[string]trace.TracerProvider{"ratio 1": setup(t, 1), "global": nil} {
		if tr := newTracer(tp, true, nil); tr.sampling {
			t.Errorf("%s: the tracer samples itself, want every call given to otelgrpc's handler", name)
		}
	}
	if tr := newTracer(setup(t, 0.5), false, nil); !tr.sampling {
		t.Error("ratio 0.5: the tracer does not sample")
	}
}

func TestGRPCServerTracingFollowsTheCaller(t *testing.T) {
	tp := setup(t, 1e-9)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	tests := []struct {
		name        string
		flags       string
		extra       []string // more metadata: the propagator extracts instead of the plain parse
		wantSampled bool
	}{
		{"sampled caller", "01", nil, true},
		{"unsampled caller", "00", nil, false},
		{"sampled caller with tracestate", "01", []string{"tracestate", "vendor=1"}, true},
		{"unsampled caller with baggage", "00", []string{"baggage", "tenant=a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := metadata.Pairs(append([]string{"traceparent", "00-" + traceID + "-00f067aa0ba902b7-" + tt.flags}, tt.extra...)...)
			span := serverSpan(t, tp, md)
			sc := span.SpanContext()
			if got := sc.TraceID().String(); got != traceID {
				t.Errorf("trace id = %s, want the caller's %s", got, traceID)
			}
			if !sc.SpanID().IsValid() || sc.SpanID().String() == "00f067aa0ba902b7" {
				t.Errorf("span id = %s, want a fresh valid one", sc.SpanID())
			}
			if got := sc.IsSampled(); got != tt.wantSampled {
				t.Errorf("sampled = %t, want %t", got, tt.wantSampled)
			}
			if got := span.IsRecording(); got != false {
				t.Errorf("recording after the call = %t, want false (a sampled span ends with the call)", got)
			}
		})
	}
}

func TestGRPCServerTracingAgreesWithTheProvider(t *testing.T) {
	tp := setup(t, 0.5)
	tr := newTracer(tp, true, nil)
	sampled := 0
	for range 200 {
		sc := serverSpan(t, tp, nil).SpanContext()
		if !sc.IsValid() {
			t.Fatalf("span context %v is not valid: unsampled calls need ids too", sc)
		}
		// The tracer's decision and the provider's are the same, on the same trace id.
		if want := tr.sampled(sc.TraceID()); sc.IsSampled() != want {
			t.Fatalf("trace %s: sampled %t; the ratio rule says %t", sc.TraceID(), sc.IsSampled(), want)
		}
		if sc.IsSampled() {
			sampled++
		}
	}
	if sampled == 0 || sampled == 200 {
		t.Errorf("%d of 200 new traces sampled at ratio 0.5, want some of each", sampled)
	}
}

func TestGRPCClientTracingPropagatesUnsampled(t *testing.T) {
	unary, _ := GRPCClientTracing(setup(t, 1e-9))
	call := func(ctx context.Context) (trace.SpanContext, string) {
		var sc trace.SpanContext
		var tp string
		err := unary(ctx, method, "req", "reply", nil, func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			sc = trace.SpanContextFromContext(ctx)
			md, _ := metadata.FromOutgoingContext(ctx)
			tp = strings.Join(md.Get("traceparent"), ",")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return sc, tp
	}

	// A call that starts a trace sends a fresh, unsampled one.
	sc, got := call(context.Background())
	if !sc.IsValid() || sc.IsSampled() {
		t.Fatalf("span context of a new call = %v, want valid and unsampled", sc)
	}
	if want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-00"; got != want {
		t.Errorf("traceparent = %q, want %q", got, want)
	}

	// A call inside an unsampled trace sends that trace on.
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: newTraceID(), SpanID: newSpanID()})
	_, got = call(trace.ContextWithSpanContext(context.Background(), parent))
	if want := "00-" + parent.TraceID().String() + "-" + parent.SpanID().String() + "-00"; got != want {
		t.Errorf("traceparent in an unsampled trace = %q, want %q", got, want)
	}

	// A sampled call gets a recording span, ended when the call returns.
	unary, _ = GRPCClientTracing(setup(t, 0.999999999))
	var span trace.Span
	err := unary(context.Background(), method, "req", "reply", nil, func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		span = trace.SpanFromContext(ctx)
		if !span.IsRecording() {
			t.Error("sampled call: span not recording during the call")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if span.IsRecording() {
		t.Error("sampled call: span still recording after the call")
	}
}

// TestGRPCTracingRecordsSpans checks that the interceptors drive otelgrpc's handlers to the spans the
// stats handlers made: one server and one client span per call, named after the method, ended, with the
// call's status.
func TestGRPCTracingRecordsSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	serverUnary, _ := GRPCServerTracing(tp)
	clientUnary, _ := GRPCClientTracing(tp)
	notFound := status.Error(codes.NotFound, "no such route")
	err := clientUnary(context.Background(), method, "req", "reply", nil, func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		md, _ := metadata.FromOutgoingContext(ctx)
		_, err := serverUnary(metadata.NewIncomingContext(ctx, md), "req", &grpc.UnaryServerInfo{FullMethod: method},
			func(context.Context, any) (any, error) { return nil, notFound })
		return err
	})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("call error = %v, want NotFound", err)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans ended, want 2 (server and client)", len(spans))
	}
	server, client := spans[0], spans[1]
	for _, s := range []sdktrace.ReadOnlySpan{server, client} {
		if s.Name() != "lastmile.route.v1.RouteService/EstimateRoute" {
			t.Errorf("span name = %q", s.Name())
		}
		var code string
		for _, a := range s.Attributes() {
			if a.Key == "rpc.response.status_code" || a.Key == "rpc.grpc.status_code" {
				code = a.Value.String()
			}
		}
		if code != "NOT_FOUND" && code != "5" {
			t.Errorf("%v span status code attribute = %q, want NOT_FOUND", s.SpanKind(), code)
		}
	}
	if server.SpanKind() != trace.SpanKindServer || client.SpanKind() != trace.SpanKindClient {
		t.Errorf("span kinds = %v, %v; want server, client", server.SpanKind(), client.SpanKind())
	}
	if server.Parent().SpanID() != client.SpanContext().SpanID() {
		t.Errorf("server span's parent = %v, want the client span %v", server.Parent().SpanID(), client.SpanContext().SpanID())
	}
}
