package telemetry

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// Keys of the attributes the logger adds to every record. They are fixed so that log queries
// (and the trace-to-logs links in Grafana) can rely on them.
const (
	KeyService   = "service"
	KeyRequestID = "request_id"
	KeyTraceID   = "trace_id"
	KeySpanID    = "span_id"
)

// LogOptions configures NewLogger.
type LogOptions struct {
	// Level is the minimum level written.
	Level slog.Level
	// Format is "json" (the default) or "text". Any other value gives JSON: validate user input
	// where it is read, in cmd/.
	Format string
	// Service, when set, is added to every record as the "service" attribute.
	Service string
}

// NewLogger returns a logger writing to w that adds request_id, trace_id and span_id, taken from
// the context passed to the *Context logging methods, to every record, plus a constant service
// attribute. The ids stay at the top level of the record even under WithGroup, so they can be
// queried the same way everywhere.
func NewLogger(w io.Writer, opts LogOptions) *slog.Logger {
	hopts := &slog.HandlerOptions{Level: opts.Level}
	var (
		inner slog.Handler
		fast  *callJSON // LogCall's own encoder, for JSON only
	)
	if opts.Format == "text" {
		inner = slog.NewTextHandler(w, hopts)
	} else {
		// The call lines of LogCall and slog's records share one writer, each written whole under its lock.
		lw := &lockedWriter{w: w}
		inner = slog.NewJSONHandler(lw, &slog.HandlerOptions{Level: opts.Level, ReplaceAttr: durationString})
		fast = &callJSON{w: lw}
	}
	if opts.Service != "" {
		inner = inner.WithAttrs([]slog.Attr{slog.String(KeyService, opts.Service)})
		if fast != nil {
			fast.attrs = appendJSONField(nil, KeyService, opts.Service)
		}
	}
	return slog.New(&contextHandler{inner: inner, json: fast})
}

// durationString writes a time.Duration as Go writes it ("20s", "3.78ms"), as the text format does,
// instead of the JSON handler's integer nanoseconds ("offer_timeout":20000000000), which an operator
// reading a log line has to count the zeros of.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// ParseLevel parses a level name: debug, info, warn or error (case-insensitive).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("parse log level %q: want debug, info, warn or error", s)
}

// contextHandler enriches records with ids from their context.
//
// Groups opened with WithGroup are not passed to the inner handler: if they were, the ids added in
// Handle would land inside the innermost group. The handler keeps them itself and rebuilds the
// nesting on each record, after the ids. Attributes added before any group are still passed to
// the inner handler, which formats them once.
type contextHandler struct {
	inner  slog.Handler
	groups []group // outermost first
	// json, set on the JSON handler NewLogger returns (not on those derived from it), writes LogCall's
	// lines as inner would.
	json *callJSON
}

// group is a group opened with WithGroup and the attributes added to it afterwards.
type group struct {
	name  string
	attrs []slog.Attr
}

func (h *contextHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

func (h *contextHandler) Handle(ctx context.Context, r slog.Record) error {
	// The ids go first, so the record is rebuilt with them in front of its attributes, in one step: the
	// attributes are gathered on the stack and added at once (one allocation for those beyond the five
	// a record holds inline), and the ids are formatted without intermediate copies.
	var buf [16]slog.Attr
	attrs := buf[:0]
	if ctx != nil {
		if id := RequestID(ctx); id != "" {
			attrs = append(attrs, slog.String(KeyRequestID, id))
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			tid, sid := sc.TraceID(), sc.SpanID()
			attrs = append(attrs, slog.String(KeyTraceID, hexString(tid[:])), slog.String(KeySpanID, hexString(sid[:])))
		}
	}
	if len(attrs) == 0 && len(h.groups) == 0 {
		return h.inner.Handle(ctx, r) // nothing to add: no copy
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	if len(h.groups) == 0 {
		r.Attrs(func(a slog.Attr) bool {
			attrs = append(attrs, a)
			return true
		})
		out.AddAttrs(attrs...)
		return h.inner.Handle(ctx, out)
	}

	inner := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		inner = append(inner, a)
		return true
	})
	// Wrap from the innermost group outwards. Empty groups vanish, as with the built-in handlers.
	for i := len(h.groups) - 1; i >= 0; i-- {
		g := h.groups[i]
		inner = []slog.Attr{slog.GroupAttrs(g.name, slices.Concat(g.attrs, inner)...)}
	}
	out.AddAttrs(append(attrs, inner...)...)
	return h.inner.Handle(ctx, out)
}

// hexString returns b in lowercase hexadecimal, as trace.TraceID.String does, with one allocation
// instead of two.
func hexString(b []byte) string {
	var dst [32]byte
	n := hex.Encode(dst[:], b)
	return string(dst[:n])
}

func (h *contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	if len(h.groups) == 0 {
		return &contextHandler{inner: h.inner.WithAttrs(attrs)}
	}
	// Copy on write: handlers derived from h share its groups slice.
	groups := slices.Clone(h.groups)
	last := &groups[len(groups)-1]
	last.attrs = slices.Concat(last.attrs, attrs)
	return &contextHandler{inner: h.inner, groups: groups}
}

func (h *contextHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	groups := slices.Concat(h.groups, []group{{name: name}})
	return &contextHandler{inner: h.inner, groups: groups}
}
