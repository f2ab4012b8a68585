package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// TestLogCallMatchesSlog checks that LogCall's own JSON encoder writes exactly the bytes slog's JSON
// handler writes for the same line.
func TestLogCallMatchesSlog(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	})
	full := &CallLine{
		Method: "/lastmile.route.v1.RouteService/EstimateRoute", Code: "PermissionDenied", DurationMS: 12.345,
		PrincipalKind: "user", Principal: "u-42", Via: "gateway", Peer: "127.0.0.1:53422", Client: "[::1]:9",
		Error: "load courier c-1: sql: no rows",
	}
	odd := "quote\" back\\slash\nnl\rcr\ttab\x00nul\x1fus\x7fdel <html>&amp; é 日本 \u2028\u2029 bad\xff\xfe utf8 \U0001F600"
	berlin := time.FixedZone("CET", 3600)
	tests := []logCallCase{
		{name: "minimal", ctx: context.Background(), level: slog.LevelInfo, t: time.Date(2026, 11, 30, 23, 55, 1, 123456789, time.UTC),
			msg: "gRPC call", line: CallLine{Method: "/m", Code: "OK", DurationMS: 0.123, PrincipalKind: "anonymous"}},
		{name: "ids and every field", service: "route", level: slog.LevelError,
			ctx: trace.ContextWithSpanContext(WithRequestID(context.Background(), "req-42"), sc),
			t:   time.Date(2026, 1, 2, 3, 4, 5, 0, berlin), msg: "gRPC call", line: *full},
		{name: "request id only", service: "bench", ctx: WithRequestID(context.Background(), "r"), level: slog.LevelWarn,
			t: time.Date(2026, 11, 30, 0, 0, 0, 100, time.UTC), msg: "gRPC call", line: CallLine{Method: "/m", Code: "Unavailable", PrincipalKind: "service", Principal: "dispatch"}},
		{name: "debug, odd strings", service: odd, ctx: WithRequestID(context.Background(), odd), level: slog.LevelDebug,
			t: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), msg: odd,
			line: CallLine{Method: odd, Code: odd, DurationMS: 1, PrincipalKind: odd, Principal: odd, Via: odd, Peer: odd, Client: odd, Error: odd}},
		{name: "nil context", ctx: nil, level: slog.LevelInfo, t: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
			msg: "m", line: CallLine{Method: "/m", Code: "OK"}},
		{name: "monotonic time", ctx: context.Background(), level: slog.LevelInfo, t: time.Now(), msg: "m", line: CallLine{DurationMS: 4200.5}},
	}
	for _, f := range []float64{0, 0.001, 0.000001, 0.0000001, 1e-9, 123456789.125, 1e20, 1e21, 1.5e300, -2.5, -1e-7, 5e-324} {
		tests = append(tests, logCallCase{name: "duration " + time.Duration(f).String(), ctx: context.Background(), level: slog.LevelInfo,
			t: time.Date(2026, 11, 30, 12, 0, 0, 5000, time.UTC), msg: "gRPC call", line: CallLine{DurationMS: f}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fast, slow bytes.Buffer
			LogCall(tt.ctx, NewLogger(&fast, LogOptions{Level: slog.LevelDebug, Service: tt.service}), tt.level, tt.t, tt.msg, &tt.line)
			logCallAttrs(tt.ctx, NewLogger(&slow, LogOptions{Level: slog.LevelDebug, Service: tt.service}), tt.level, tt.t, tt.msg, &tt.line)
			if fast.String() != slow.String() {
				t.Errorf("LogCall wrote\n%s\nslog's JSON handler wrote\n%s", fast.String(), slow.String())
			}
			if fast.Len() == 0 || fast.Bytes()[fast.Len()-1] != '\n' || bytes.Count(fast.Bytes(), []byte("\n")) != 1 {
				t.Errorf("LogCall wrote %q, want one line", fast.String())
			}
		})
	}
}

// TestLogCallFallsBack checks the lines LogCall leaves to slog: loggers derived with With or WithGroup,
// text loggers, and values the encoder does not format itself, all written as slog writes them.
func TestLogCallFallsBack(t *testing.T) {
	line := &CallLine{Method: "/m", Code: "OK", DurationMS: 1.5, PrincipalKind: "anonymous"}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		logger func(*bytes.Buffer) *slog.Logger
		t      time.Time
		line   *CallLine
		want   string
	}{
		{name: "With", logger: func(b *bytes.Buffer) *slog.Logger { return NewLogger(b, LogOptions{}).With("k", "v") }, t: at, line: line,
			want: `{"time":"2026-11-30T12:00:00Z","level":"INFO","msg":"gRPC call","k":"v","method":"/m","code":"OK","duration_ms":1.5,"principal_kind":"anonymous"}` + "\n"},
		{name: "WithGroup", logger: func(b *bytes.Buffer) *slog.Logger { return NewLogger(b, LogOptions{}).WithGroup("g") }, t: at, line: line,
			want: `{"time":"2026-11-30T12:00:00Z","level":"INFO","msg":"gRPC call","g":{"method":"/m","code":"OK","duration_ms":1.5,"principal_kind":"anonymous"}}` + "\n"},
		{name: "text", logger: func(b *bytes.Buffer) *slog.Logger { return NewLogger(b, LogOptions{Format: "text"}) }, t: at, line: line,
			want: `time=2026-11-30T12:00:00.000Z level=INFO msg="gRPC call" method=/m code=OK duration_ms=1.5 principal_kind=anonymous` + "\n"},
		{name: "year 10000", logger: func(b *bytes.Buffer) *slog.Logger { return NewLogger(b, LogOptions{}) }, t: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), line: line,
			want: `{"time":"!ERROR:time.Time year outside of range [0,9999]""10000-01-01T00:00:00Z","level":"INFO","msg":"gRPC call","method":"/m","code":"OK","duration_ms":1.5,"principal_kind":"anonymous"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			LogCall(context.Background(), tt.logger(&b), slog.LevelInfo, tt.t, "gRPC call", tt.line)
			if got := b.String(); got != tt.want {
				t.Errorf("LogCall wrote\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// logCallCase is one line for LogCall and slog to write: the logger's service, the record's context,
// level, time and message, and the call's fields.
type logCallCase struct {
	name    string
	service string
	ctx     context.Context
	level   slog.Level
	t       time.Time
	msg     string
	line    CallLine
}
