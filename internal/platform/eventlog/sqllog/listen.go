package sqllog

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/platform/eventlog"
)

// closeTimeout bounds closing the listener's connection, which says goodbye to the server first.
const closeTimeout = 5 * time.Second

// Listener returns an eventlog.Options.Wake function for PostgreSQL: it keeps one connection of pool
// (the pool behind the Source's *sql.DB) listening on the log's notification channel, which Append
// notifies on commit, and nudges the tailer for every notification and after every (re)connection,
// since notifications sent while it was away are lost. Failures are retried with backoff and not
// logged: the tailer, reading the same database, logs the outage once.
func Listener(pool *pgxpool.Pool) func(ctx context.Context, b eventlog.Backoff, nudge func()) {
	return func(ctx context.Context, b eventlog.Backoff, nudge func()) {
		failures := 0
		for {
			listened, _ := listenOnce(ctx, pool, nudge) // always an error, nil only after ctx ends
			if ctx.Err() != nil {
				return
			}
			if listened {
				// A connection that listened and then broke starts the backoff afresh: only failures in
				// a row stretch it.
				failures = 0
			}
			failures++
			t := time.NewTimer(b.Delay(failures))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// listenOnce listens on one dedicated connection until it fails or ctx is done, and reports whether it
// got as far as listening. The connection is taken out of the pool (a connection in LISTEN state must not
// serve other queries) and closed on return.
func listenOnce(ctx context.Context, pool *pgxpool.Pool, nudge func()) (listened bool, err error) {
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("acquire listener connection: %w", err)
	}
	conn := pc.Hijack()
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		_ = conn.Close(ctx)
	}()
	var channel string
	if err := conn.QueryRow(ctx, "SELECT "+notifyChannel).Scan(&channel); err != nil {
		return false, fmt.Errorf("find notification channel: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("listen on %s: %w", channel, err)
	}
	nudge()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return true, fmt.Errorf("wait for notification on %s: %w", channel, err)
		}
		nudge()
	}
}
