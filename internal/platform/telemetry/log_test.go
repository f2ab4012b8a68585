package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"testing/slogtest"
	"time"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"lastmile/internal/platform/telemetry"
)

// spanContext returns a context carrying a recording span of a fresh SDK provider.
func spanContext(t *testing.T, ctx context.Context) (context.Context, trace.SpanContext) {
	t.Helper()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() {
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Errorf("tracer provider shutdown: %v", err)
		}
	})
	ctx, span := tp.Tracer("test").Start(ctx, "op")
	t.Cleanup(func() { span.End() })
	if !span.IsRecording() {
		t.Fatal("span is not recording")
	}
	return ctx, span.SpanContext()
}

// decodeLine decodes the single JSON line in buf, dropping the time, which varies.
func decodeLine(t *testing.T, buf *bytes.Buffer) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d log lines, want 1: %q", len(lines), buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("decode log line %q: %v", lines[0], err)
	}
	if _, ok := m["time"]; !ok {
		t.Errorf("log line %q has no time", lines[0])
	}
	delete(m, "time")
	return m
}

func TestLoggerAddsContextIDs(t *testing.T) {
	var buf bytes.Buffer
	logger := telemetry.NewLogger(&buf, telemetry.LogOptions{Service: "courier"})
	ctx, sc := spanContext(t, telemetry.WithRequestID(context.Background(), "req-42"))

	logger.InfoContext(ctx, "claimed", "courier_id", "c1")

	got := decodeLine(t, &buf)
	want := map[string]any{
		"level":      "INFO",
		"msg":        "claimed",
		"service":    "courier",
		"request_id": "req-42",
		"trace_id":   sc.TraceID().String(),
		"span_id":    sc.SpanID().String(),
		"courier_id": "c1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log line mismatch (-want +got):\n%s", diff)
	}
}

// TestLoggerJSONDurationsReadable: a duration is written as "20s", in groups too, not as nanoseconds.
func TestLoggerJSONDurationsReadable(t *testing.T) {
	var buf bytes.Buffer
	logger := telemetry.NewLogger(&buf, telemetry.LogOptions{})
	logger.With("drain_delay", 2*time.Second).WithGroup("g").Info("stopping", "elapsed", 3789855*time.Nanosecond)
	want := map[string]any{"level": "INFO", "msg": "stopping", "drain_delay": "2s", "g": map[string]any{"elapsed": "3.789855ms"}}
	if diff := cmp.Diff(want, decodeLine(t, &buf)); diff != "" {
		t.Errorf("log line (-want +got):\n%s", diff)
	}
}

func TestLoggerWithoutContextIDs(t *testing.T) {
	var buf bytes.Buffer
	logger := telemetry.NewLogger(&buf, telemetry.LogOptions{})

	// An invalid span context, as left by a non-recording no-op tracer, adds nothing.
	ctx := trace.ContextWithSpanContext(context.Background(), trace.SpanContext{})
	logger.InfoContext(ctx, "started")

	got := decodeLine(t, &buf)
	want := map[string]any{"level": "INFO", "msg": "started"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log line mismatch (-want +got):\n%s", diff)
	}
}

func TestLoggerDerivedKeepsEnrichment(t *testing.T) {
	ctx, sc := spanContext(t, telemetry.WithRequestID(context.Background(), "req-7"))
	ids := map[string]any{
		"request_id": "req-7",
		"trace_id":   sc.TraceID().String(),
		"span_id":    sc.SpanID().String(),
	}
	with := func(extra map[string]any) map[string]any {
		m := map[string]any{"level": "INFO", "msg": "m"}
		for k, v := range ids {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	tests := []struct {
		name   string
		derive func(*slog.Logger) *slog.Logger
		want   map[string]any
	}{
		{
			name:   "WithAttrs",
			derive: func(l *slog.Logger) *slog.Logger { return l.With("a", "1") },
			want:   with(map[string]any{"a": "1", "x": "y"}),
		},
		{
			name:   "WithGroup",
			derive: func(l *slog.Logger) *slog.Logger { return l.WithGroup("g") },
			want:   with(map[string]any{"g": map[string]any{"x": "y"}}),
		},
		{
			name: "WithAttrs then WithGroup then WithAttrs",
			derive: func(l *slog.Logger) *slog.Logger {
				return l.With("a", "1").WithGroup("g").With("b", "2")
			},
			want: with(map[string]any{"a": "1", "g": map[string]any{"b": "2", "x": "y"}}),
		},
		{
			name: "nested groups",
			derive: func(l *slog.Logger) *slog.Logger {
				return l.WithGroup("g").With("b", "2").WithGroup("h")
			},
			want: with(map[string]any{"g": map[string]any{"b": "2", "h": map[string]any{"x": "y"}}}),
		},
		{
			name:   "empty group name is ignored",
			derive: func(l *slog.Logger) *slog.Logger { return l.WithGroup("") },
			want:   with(map[string]any{"x": "y"}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := tt.derive(telemetry.NewLogger(&buf, telemetry.LogOptions{}))
			logger.InfoContext(ctx, "m", "x", "y")
			if diff := cmp.Diff(tt.want, decodeLine(t, &buf)); diff != "" {
				t.Errorf("log line mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoggerEmptyGroupOmitted(t *testing.T) {
	var buf bytes.Buffer
	logger := telemetry.NewLogger(&buf, telemetry.LogOptions{}).WithGroup("g").WithGroup("h")
	logger.InfoContext(telemetry.WithRequestID(context.Background(), "r"), "m")

	got := decodeLine(t, &buf)
	want := map[string]any{"level": "INFO", "msg": "m", "request_id": "r"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log line mismatch (-want +got):\n%s", diff)
	}
}

func TestLoggerDerivedDoNotShareGroups(t *testing.T) {
	var buf bytes.Buffer
	base := telemetry.NewLogger(&buf, telemetry.LogOptions{}).WithGroup("g")
	a := base.With("a", "1")
	_ = base.With("b", "2") // must not leak into a

	a.Info("m")

	got := decodeLine(t, &buf)
	want := map[string]any{"level": "INFO", "msg": "m", "g": map[string]any{"a": "1"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log line mismatch (-want +got):\n%s", diff)
	}
}

func TestLoggerLevel(t *testing.T) {
	var buf bytes.Buffer
	logger := telemetry.NewLogger(&buf, telemetry.LogOptions{Level: slog.LevelWarn})

	logger.Info("dropped")
	logger.Warn("kept")

	got := decodeLine(t, &buf)
	want := map[string]any{"level": "WARN", "msg": "kept"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log line mismatch (-want +got):\n%s", diff)
	}
}

func TestLoggerTextFormat(t *testing.T) {
	var buf bytes.Buffer
	logger := telemetry.NewLogger(&buf, telemetry.LogOptions{Format: "text", Service: "route"})

	logger.InfoContext(telemetry.WithRequestID(context.Background(), "r1"), "hello", "k", "v")

	line := buf.String()
	_, rest, ok := strings.Cut(line, " ") // drop time=...
	if !ok {
		t.Fatalf("text line %q has no fields", line)
	}
	if got, want := rest, "level=INFO msg=hello service=route request_id=r1 k=v\n"; got != want {
		t.Errorf("text line = %q, want %q", got, want)
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in   string
		want slog.Level
	}{
		{"debug", slog.LevelDebug},
		{"info", slog.LevelInfo},
		{"warn", slog.LevelWarn},
		{"error", slog.LevelError},
		{"WARN", slog.LevelWarn},
		{" Info ", slog.LevelInfo},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := telemetry.ParseLevel(tt.in)
			if err != nil {
				t.Fatalf("ParseLevel(%q) error = %v, want nil", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseLevel(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseLevelRejects(t *testing.T) {
	for _, in := range []string{"", "warning", "trace", "1", "fatal"} {
		t.Run(in, func(t *testing.T) {
			if got, err := telemetry.ParseLevel(in); err == nil {
				t.Errorf("ParseLevel(%q) = %v, nil; want an error", in, got)
			}
		})
	}
}

// The handler must still obey the slog.Handler contract, groups included.
func TestLoggerHandlerConformance(t *testing.T) {
	var buf bytes.Buffer
	newHandler := func(t *testing.T) slog.Handler {
		buf.Reset()
		return telemetry.NewLogger(&buf, telemetry.LogOptions{}).Handler()
	}
	result := func(t *testing.T) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("decode log line %q: %v", buf.String(), err)
		}
		return m
	}
	slogtest.Run(t, newHandler, result)
}
