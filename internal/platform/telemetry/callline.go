package telemetry

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"
)

// CallLine is the one log line a server writes per call (grpcserver's logging stage): its attributes in
// the order they are written, after the request and trace ids. Empty optional fields are left out.
type CallLine struct {
	Method        string
	Code          string
	DurationMS    float64
	PrincipalKind string
	Principal     string // optional
	Via           string // optional
	Peer          string // optional
	Client        string // optional
	Error         string // optional
}

// LogCall writes line at level, with time t and message msg, to logger. For a JSON logger made by
// NewLogger (without With or WithGroup) it formats the line itself, byte for byte as slog's JSON handler
// would (a test compares the two), without the record copies, attribute values, caller lookup and the
// encoding/json call slog makes for a float: the call line is written on every call, on the path of
// the response. Any other logger gets the same attributes through LogAttrs. The caller checks that
// level is enabled.
func LogCall(ctx context.Context, logger *slog.Logger, level slog.Level, t time.Time, msg string, line *CallLine) {
	if h, ok := logger.Handler().(*contextHandler); ok && h.json != nil && h.json.write(ctx, level, t, msg, line) {
		return
	}
	logCallAttrs(ctx, logger, level, t, msg, line)
}

// optional returns the fields of the call line written only when set, in the order both encoders
// write them.
func (line *CallLine) optional() [5]struct{ key, value string } {
	return [...]struct{ key, value string }{
		{"principal", line.Principal}, {"via", line.Via}, {"peer", line.Peer}, {"client", line.Client}, {"error", line.Error},
	}
}

// logCallAttrs writes line through the logger's handler as a slog record.
func logCallAttrs(ctx context.Context, logger *slog.Logger, level slog.Level, t time.Time, msg string, line *CallLine) {
	r := slog.NewRecord(t, level, msg, 0)
	r.AddAttrs(
		slog.String("method", line.Method),
		slog.String("code", line.Code),
		slog.Float64("duration_ms", line.DurationMS),
		slog.String("principal_kind", line.PrincipalKind),
	)
	for _, a := range line.optional() {
		if a.value != "" {
			r.AddAttrs(slog.String(a.key, a.value))
		}
	}
	_ = logger.Handler().Handle(ctx, r) // as slog.Logger drops its handler's error
}

// lockedWriter serializes the writes of slog's JSON handler and of callJSON to one writer: each writes
// a whole line at once.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// callJSON formats call lines for a NewLogger JSON logger: attrs holds the attributes its handler was
// made with (",\"service\":\"...\""), already encoded.
type callJSON struct {
	w     *lockedWriter
	attrs []byte
}

var callBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// write formats and writes the line; false when the line holds a value this encoder does not format as
// slog does (a time outside years 0-9999, a duration that is not a finite number), for the caller to
// log through slog instead.
func (j *callJSON) write(ctx context.Context, level slog.Level, t time.Time, msg string, line *CallLine) bool {
	if y := t.Year(); y < 0 || y >= 10000 || math.IsNaN(line.DurationMS) || math.IsInf(line.DurationMS, 0) {
		return false
	}
	bp := callBufs.Get().(*[]byte)
	b := append((*bp)[:0], `{"time":"`...)
	b = t.Round(0).AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":`...)
	b = appendJSONString(b, level.String())
	b = append(b, `,"msg":`...)
	b = appendJSONString(b, msg)
	b = append(b, j.attrs...)
	if ctx != nil {
		if id := RequestID(ctx); id != "" {
			b = appendJSONField(b, KeyRequestID, id)
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			tid, sid := sc.TraceID(), sc.SpanID()
			b = append(b, `,"`+KeyTraceID+`":"`...)
			b = hex.AppendEncode(b, tid[:])
			b = append(b, `","`+KeySpanID+`":"`...)
			b = hex.AppendEncode(b, sid[:])
			b = append(b, '"')
		}
	}
	b = appendJSONField(b, "method", line.Method)
	b = appendJSONField(b, "code", line.Code)
	b = append(b, `,"duration_ms":`...)
	b = appendJSONFloat(b, line.DurationMS)
	b = appendJSONField(b, "principal_kind", line.PrincipalKind)
	for _, a := range line.optional() {
		if a.value != "" {
			b = appendJSONField(b, a.key, a.value)
		}
	}
	b = append(b, "}\n"...)
	_, _ = j.w.Write(b) // as slog.Logger drops its handler's write error
	if cap(b) <= 16<<10 {
		*bp = b
		callBufs.Put(bp)
	}
	return true
}

// appendJSONField appends ,"key":"value" with both escaped.
func appendJSONField(b []byte, key, value string) []byte {
	b = append(b, ',')
	b = appendJSONString(b, key)
	b = append(b, ':')
	return appendJSONString(b, value)
}

const lowerHex = "0123456789abcdef"

// appendJSONFloat appends f as encoding/json encodes a float64, which is what slog's JSON handler calls.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendJSONString appends s quoted and escaped as slog's JSON handler escapes strings (encoding/json's
// rules without HTML escaping).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', lowerHex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
