package eventlog

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// closeTimeout bounds closing the listener's connection, which says goodbye to the server first.
const closeTimeout = 5 * time.Second

// listen keeps a connection of Options.Listener listening on the log's notification channel until ctx
// is done, nudging the tailer for every notification and after every (re)connection, since
// notifications sent while it was away are lost. Failures are retried with backoff; they are not
// logged, because the tailer, reading the same database, logs the outage once.
func (l *Log) listen(ctx context.Context) {
	failures := 0
	for {
		err := l.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		failures++
		l.opts.Logger.DebugContext(ctx, "event log listener failed", "error", err.Error(), "failures", failures)
		t := time.NewTimer(backoff(l.opts.Poll, l.opts.MaxBackoff, failures))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// listenOnce listens on one dedicated connection until it fails or ctx is done. The connection is
// taken out of the pool (a connection in LISTEN state must not serve other queries) and closed on
// return.
func (l *Log) listenOnce(ctx context.Context) error {
	pc, err := l.opts.Listener.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire listener connection: %w", err)
	}
	conn := pc.Hijack()
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		_ = conn.Close(ctx)
	}()
	var channel string
	if err := conn.QueryRow(ctx, "SELECT "+notifyChannel).Scan(&channel); err != nil {
		return fmt.Errorf("find notification channel: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen on %s: %w", channel, err)
	}
	l.Nudge()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("wait for notification on %s: %w", channel, err)
		}
		l.Nudge()
	}
}
