package telemetry

import (
	"context"
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
	var inner slog.Handler
	if opts.Format == "text" {
		inner = slog.NewTextHandler(w, hopts)
	} else {
		inner = slog.NewJSONHandler(w, hopts)
	}
	if opts.Service != "" {
		inner = inner.WithAttrs([]slog.Attr{slog.String(KeyService, opts.Service)})
	}
	return slog.New(&contextHandler{inner: inner})
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
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	if ctx != nil {
		if id := RequestID(ctx); id != "" {
			out.AddAttrs(slog.String(KeyRequestID, id))
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			out.AddAttrs(
				slog.String(KeyTraceID, sc.TraceID().String()),
				slog.String(KeySpanID, sc.SpanID().String()),
			)
		}
	}

	if len(h.groups) == 0 {
		r.Attrs(func(a slog.Attr) bool {
			out.AddAttrs(a)
			return true
		})
		return h.inner.Handle(ctx, out)
	}

	attrs := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})
	// Wrap from the innermost group outwards. Empty groups vanish, as with the built-in handlers.
	for i := len(h.groups) - 1; i >= 0; i-- {
		g := h.groups[i]
		attrs = []slog.Attr{slog.GroupAttrs(g.name, slices.Concat(g.attrs, attrs)...)}
	}
	out.AddAttrs(attrs...)
	return h.inner.Handle(ctx, out)
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
