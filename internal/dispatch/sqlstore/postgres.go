package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/eventlog/sqllog"
)

// createTaskPostgres is CreateTask's statement on PostgreSQL for a task without offers: the insert and
// its event in one statement (sqllog.AppendWithPostgres), outside a transaction.
var createTaskPostgres = sqllog.AppendWithPostgres(`
	INSERT INTO tasks (id, state, customer_id, courier_id, offer_courier_id, priority_rank, create_time,
		update_time, due_time, created_by, request_id, version, doc)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
	ON CONFLICT (created_by, request_id) DO NOTHING
	RETURNING id`, "$14::text", "id", "$15::bytea", "$16::timestamptz")

// createPostgres is CreateTask on PostgreSQL for t, stored and encoded as doc, when it has no offers
// (every task a customer creates): one round trip instead of four (BEGIN, the insert, the append,
// COMMIT), and the event log's lock held for the statement's own commit only. A request made before
// inserts and appends nothing (ON CONFLICT DO NOTHING waits for a conflicting insert in flight); its
// task is read after, committed.
func (s *Store) createPostgres(ctx context.Context, t dispatch.Task, doc string) (dispatch.Task, bool, error) {
	at := storedTime(time.Now())
	err := s.retrying(ctx, func() error {
		var seq int64
		return s.db.QueryRowContext(ctx, createTaskPostgres,
			t.ID, string(t.State), t.CustomerID, nullString(t.CourierID), nil, t.Priority.Rank(),
			s.time(t.CreateTime), s.time(t.UpdateTime), s.nullTime(t.DueTime), t.CreatedBy, nullString(t.RequestID),
			t.Version, doc, dispatch.TopicTask, []byte(t.State), at).Scan(&seq)
	})
	if errors.Is(err, sql.ErrNoRows) {
		// The request was made before: answer with its task.
		prev, err := s.scanTask(s.db.QueryRowContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE created_by = $1 AND request_id = $2`,
			t.CreatedBy, t.RequestID))
		if err != nil {
			return dispatch.Task{}, false, s.e.MapError(err, "load task of request "+t.RequestID+" by "+t.CreatedBy)
		}
		return prev, false, nil
	}
	if err != nil {
		return dispatch.Task{}, false, s.e.MapError(err, "insert task "+t.ID)
	}
	s.afterAppend()
	s.docs.put(doc, t)
	return t, true, nil
}

// retrying runs fn, a statement outside a transaction, again when it fails with an error the engine
// reports as retryable, as inTx runs a transaction again.
func (s *Store) retrying(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt == maxTxAttempts || s.e.Retryable == nil || !s.e.Retryable(err) {
			if err != nil && attempt == maxTxAttempts && s.e.Retryable != nil && s.e.Retryable(err) {
				return apperr.Wrap(apperr.Aborted, err, "too many concurrent changes; try again")
			}
			return err
		}
		pause := time.Duration(rand.Int64N(int64(5*time.Millisecond) << attempt))
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}
