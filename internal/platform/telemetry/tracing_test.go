package telemetry_test

import (
	"context"
	"math"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"lastmile/internal/platform/telemetry"
)

func TestSetupTracingWithoutEndpoint(t *testing.T) {
	ctx := context.Background()
	tp, shutdown, err := telemetry.SetupTracing(ctx, telemetry.TracingConfig{ServiceName: "route", Version: "v1"})
	if err != nil {
		t.Fatalf("SetupTracing: %v", err)
	}
	t.Cleanup(func() {
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})

	ctx, span := tp.Tracer("test").Start(ctx, "op")
	defer span.End()
	sc := span.SpanContext()
	if !sc.IsValid() {
		t.Fatalf("span context %v is not valid", sc)
	}
	if !sc.IsSampled() {
		t.Errorf("span context %v is not sampled, want sampled with the default ratio 1", sc)
	}

	// The global propagator carries the trace to peers.
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	if got := carrier.Get("traceparent"); got != want {
		t.Errorf("traceparent = %q, want %q", got, want)
	}

	// A child continues the same trace.
	_, child := tp.Tracer("test").Start(ctx, "child")
	defer child.End()
	if got, want := child.SpanContext().TraceID(), sc.TraceID(); got != want {
		t.Errorf("child trace id = %v, want %v", got, want)
	}
}

func TestSetupTracingWithEndpoint(t *testing.T) {
	// Nothing listens there: the exporter connects lazily, so setup succeeds and shutdown,
	// with no span to flush, returns promptly.
	tp, shutdown, err := telemetry.SetupTracing(context.Background(), telemetry.TracingConfig{
		ServiceName:  "route",
		OTLPEndpoint: "127.0.0.1:1",
		Insecure:     true,
		SampleRatio:  0.5,
	})
	if err != nil {
		t.Fatalf("SetupTracing: %v", err)
	}
	if tp == nil {
		t.Fatal("SetupTracing returned a nil provider")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestSetupTracingRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  telemetry.TracingConfig
	}{
		{"no service name", telemetry.TracingConfig{}},
		{"negative ratio", telemetry.TracingConfig{ServiceName: "s", SampleRatio: -0.1}},
		{"ratio above 1", telemetry.TracingConfig{ServiceName: "s", SampleRatio: 1.5}},
		{"NaN ratio", telemetry.TracingConfig{ServiceName: "s", SampleRatio: math.NaN()}},
		{"bad URL scheme", telemetry.TracingConfig{ServiceName: "s", OTLPEndpoint: "ftp://collector:4317"}},
		{"URL without host", telemetry.TracingConfig{ServiceName: "s", OTLPEndpoint: "http://"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := telemetry.SetupTracing(context.Background(), tt.cfg); err == nil {
				t.Errorf("SetupTracing(%+v) error = nil, want an error", tt.cfg)
			}
		})
	}
}
