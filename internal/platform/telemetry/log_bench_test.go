package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"lastmile/internal/platform/telemetry"
)

// BenchmarkLoggerCallLine writes the gRPC server's call log line (six attributes, a request id and an
// unsampled trace in the context) through NewLogger's JSON handler to io.Discard.
func BenchmarkLoggerCallLine(b *testing.B) {
	logger, ctx := callLineLogger()
	b.ReportAllocs()
	for b.Loop() {
		logger.LogAttrs(ctx, slog.LevelInfo, "gRPC call",
			slog.String("method", "/lastmile.route.v1.RouteService/EstimateRoute"),
			slog.String("code", "OK"),
			slog.Float64("duration_ms", 0.123),
			slog.String("principal_kind", "service"),
			slog.String("principal", "dispatch"),
			slog.String("peer", "127.0.0.1:53422"))
	}
}

// BenchmarkLogCall writes the same line as BenchmarkLoggerCallLine through LogCall, which formats it
// itself for a NewLogger JSON logger.
func BenchmarkLogCall(b *testing.B) {
	logger, ctx := callLineLogger()
	line := &telemetry.CallLine{Method: "/lastmile.route.v1.RouteService/EstimateRoute", Code: "OK", DurationMS: 0.123,
		PrincipalKind: "service", Principal: "dispatch", Peer: "127.0.0.1:53422"}
	b.ReportAllocs()
	for b.Loop() {
		telemetry.LogCall(ctx, logger, slog.LevelInfo, time.Now(), "gRPC call", line)
	}
}

// callLineLogger returns what the call-line benchmarks write with: NewLogger's JSON logger to io.Discard,
// and a context with a request id and an unsampled trace, as a server call's.
func callLineLogger() (*slog.Logger, context.Context) {
	logger := telemetry.NewLogger(io.Discard, telemetry.LogOptions{Level: slog.LevelInfo, Service: "bench"})
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	})
	return logger, trace.ContextWithSpanContext(telemetry.WithRequestID(context.Background(), "req-42"), sc)
}
