package gateway

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// accessLogMessage is the message of the access log line the gateway writes for every request.
const accessLogMessage = "http request"

// logAccess writes the access log line of one request, whatever answered it: a service, or the gateway
// itself (404, 405, 413, 415, a body that is not JSON). The fields are the method the client sent, the
// matched route template (never the raw path, which may carry ids and is the client's to choose; "unmatched"
// when no route matched), the status, the body bytes sent (compressed, when gzip applied), the duration,
// and the client address the gateway decided (see setClientAddr). The request id comes from ctx: the
// telemetry log handler adds it as request_id. Server faults (5xx) log at warning level.
func (g *Gateway) logAccess(ctx context.Context, r *http.Request, method, route string, status int, bytes int64, d time.Duration) {
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	client := r.RemoteAddr
	if host, _, err := net.SplitHostPort(client); err == nil {
		client = host
	}
	g.log.LogAttrs(ctx, level, accessLogMessage,
		slog.String("method", method), slog.String("route", route),
		slog.Int("status", status), slog.Int64("bytes", bytes),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("client", client))
}
