package telemetry

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
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

var rpcInfo = &stats.RPCTagInfo{FullMethodName: "/lastmile.route.v1.RouteService/EstimateRoute"}

func TestGRPCHandlersWithoutSampling(t *testing.T) {
	// Ratio 1 and providers not made by SetupTracing get otelgrpc's handler itself.
	for name, tp := range map[string]trace.TracerProvider{"ratio 1": setup(t, 1), "global": nil} {
		if _, ok := GRPCServerHandler(tp).(*sampledHandler); ok {
			t.Errorf("%s: GRPCServerHandler is the sampled-only handler, want otelgrpc's", name)
		}
	}
	if _, ok := GRPCClientHandler(setup(t, 0.5)).(*sampledHandler); !ok {
		t.Error("ratio 0.5: GRPCClientHandler is not the sampled-only handler")
	}
}

func TestGRPCServerHandlerFollowsTheCaller(t *testing.T) {
	h := GRPCServerHandler(setup(t, 1e-9))
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	tests := []struct {
		name        string
		flags       string
		wantSampled bool
	}{
		{"sampled caller", "01", true},
		{"unsampled caller", "00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.NewIncomingContext(context.Background(),
				metadata.Pairs("traceparent", "00-"+traceID+"-00f067aa0ba902b7-"+tt.flags))
			ctx = h.TagRPC(ctx, rpcInfo)
			span := trace.SpanFromContext(ctx)
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
			if got := span.IsRecording(); got != tt.wantSampled {
				t.Errorf("recording = %t, want %t", got, tt.wantSampled)
			}
			if got := ctx.Value(unsampledKey{}) != nil; got == tt.wantSampled {
				t.Errorf("marked unsampled = %t, want %t", got, !tt.wantSampled)
			}
			h.HandleRPC(ctx, &stats.End{})
		})
	}
}

func TestGRPCServerHandlerAgreesWithTheProvider(t *testing.T) {
	h := GRPCServerHandler(setup(t, 0.5)).(*sampledHandler)
	sampled := 0
	for range 200 {
		ctx := h.TagRPC(context.Background(), rpcInfo)
		span := trace.SpanFromContext(ctx)
		sc := span.SpanContext()
		if !sc.IsValid() {
			t.Fatalf("span context %v is not valid: unsampled calls need ids too", sc)
		}
		// The handler's decision and the provider's are the same, on the same trace id.
		if want := h.sampled(sc.TraceID()); sc.IsSampled() != want || span.IsRecording() != want {
			t.Fatalf("trace %s: sampled %t, recording %t; the ratio rule says %t", sc.TraceID(), sc.IsSampled(), span.IsRecording(), want)
		}
		if sc.IsSampled() {
			sampled++
		}
		h.HandleRPC(ctx, &stats.End{})
	}
	if sampled == 0 || sampled == 200 {
		t.Errorf("%d of 200 new traces sampled at ratio 0.5, want some of each", sampled)
	}
}

func TestGRPCClientHandlerPropagatesUnsampled(t *testing.T) {
	h := GRPCClientHandler(setup(t, 1e-9))

	// A call that starts a trace sends a fresh, unsampled one.
	ctx := h.TagRPC(context.Background(), rpcInfo)
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.IsSampled() {
		t.Fatalf("span context of a new call = %v, want valid and unsampled", sc)
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-00"
	if got := strings.Join(md.Get("traceparent"), ","); got != want {
		t.Errorf("traceparent = %q, want %q", got, want)
	}

	// A call inside an unsampled trace sends that trace on.
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: newTraceID(), SpanID: newSpanID()})
	ctx = h.TagRPC(trace.ContextWithSpanContext(context.Background(), parent), rpcInfo)
	md, _ = metadata.FromOutgoingContext(ctx)
	want = "00-" + parent.TraceID().String() + "-" + parent.SpanID().String() + "-00"
	if got := strings.Join(md.Get("traceparent"), ","); got != want {
		t.Errorf("traceparent in an unsampled trace = %q, want %q", got, want)
	}
	h.HandleRPC(ctx, &stats.End{})
}
