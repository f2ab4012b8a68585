package telemetry_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel"

	"lastmile/internal/platform/telemetry"
)

func ExampleParseLevel() {
	level, err := telemetry.ParseLevel("warn")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(level)
	// Output: WARN
}

func ExampleNewLogger() {
	ctx := context.Background()
	tp, shutdown, err := telemetry.SetupTracing(ctx, telemetry.TracingConfig{ServiceName: "dispatch"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer shutdown(ctx)
	otel.SetTracerProvider(tp) // SetupTracing leaves this choice to main.

	logger := telemetry.NewLogger(os.Stderr, telemetry.LogOptions{Level: slog.LevelInfo, Service: "dispatch"})
	ctx = telemetry.WithRequestID(ctx, "4f9c")
	ctx, span := tp.Tracer("dispatch").Start(ctx, "Assign")
	defer span.End()

	// {"time":...,"level":"INFO","msg":"offer sent","service":"dispatch","request_id":"4f9c",
	//  "trace_id":"...","span_id":"...","courier_id":"c-17"}
	logger.InfoContext(ctx, "offer sent", "courier_id", "c-17")
}
