package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// InTx runs fn in a transaction on db and commits it when fn returns nil. When fn returns an error the
// transaction is rolled back and fn's error is returned as is (errors.Is and apperr.CodeOf still see
// it); when fn panics or calls runtime.Goexit (t.Fatal) it is rolled back and the panic continues.
// Failing to begin or commit for want of the database is Unavailable (Classify).
//
// fn must use tx only: with OpenSQLite's single writer connection, a query on db inside fn waits
// forever, and one on Reader(db) runs outside the transaction, without seeing its writes.
func InTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return Classify(fmt.Errorf("begin transaction: %w", err))
	}
	finished := false
	defer func() {
		// Reached without finished only while panicking or on Goexit; a deferred rollback (rather
		// than recover and re-panic) keeps the original stack trace.
		if !finished {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		finished = true
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			return errors.Join(err, fmt.Errorf("roll back: %w", rbErr))
		}
		return err
	}
	finished = true
	if err := tx.Commit(); err != nil {
		return Classify(fmt.Errorf("commit transaction: %w", err))
	}
	return nil
}

// InPgxTx runs fn in a transaction on pool with the same semantics as InTx: commit on nil, roll back
// and return fn's error unchanged otherwise, roll back and keep panicking on panic.
func InPgxTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return inPgxTx(ctx, pool, pgx.TxOptions{}, fn)
}

// TxOptions configures InPgxTxWith.
type TxOptions struct {
	// TxOptions sets isolation level, access mode and deferrability.
	pgx.TxOptions
	// Retries is how many more times to run the whole transaction when PostgreSQL aborts it with
	// serialization_failure (40001) or deadlock_detected (40P01), which serializable and repeatable
	// read transactions must expect. At most MaxTxRetries. fn must be safe to run again: no side
	// effects outside the transaction.
	Retries int
}

// MaxTxRetries bounds TxOptions.Retries.
const MaxTxRetries = 10

// SerializableTx is the usual choice for a read-check-write transaction that must not lose updates:
// serializable isolation, retried up to 5 times.
var SerializableTx = TxOptions{TxOptions: pgx.TxOptions{IsoLevel: pgx.Serializable}, Retries: 5}

// InPgxTxWith is InPgxTx with explicit options, retrying the transaction on serialization failures
// and deadlocks after a short randomized pause. The last attempt's error is returned.
func InPgxTxWith(ctx context.Context, pool *pgxpool.Pool, opts TxOptions, fn func(pgx.Tx) error) error {
	if opts.Retries < 0 || opts.Retries > MaxTxRetries {
		return fmt.Errorf("transaction retries %d: want 0..%d", opts.Retries, MaxTxRetries)
	}
	for attempt := 0; ; attempt++ {
		err := inPgxTx(ctx, pool, opts.TxOptions, fn)
		if err == nil || attempt == opts.Retries || !retryable(err) {
			return err
		}
		// Randomized so the transactions that collided do not collide again in lockstep.
		pause := time.Duration(rand.Int64N(int64(5*time.Millisecond) << min(attempt, 4)))
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

func inPgxTx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return Classify(fmt.Errorf("begin transaction: %w", err))
	}
	finished := false
	defer func() {
		if !finished {
			_ = rollbackPgx(ctx, tx)
		}
	}()
	if err := fn(tx); err != nil {
		finished = true
		if rbErr := rollbackPgx(ctx, tx); rbErr != nil && !errors.Is(rbErr, pgx.ErrTxClosed) {
			return errors.Join(err, fmt.Errorf("roll back: %w", rbErr))
		}
		return err
	}
	finished = true
	if err := tx.Commit(ctx); err != nil {
		return Classify(fmt.Errorf("commit transaction: %w", err))
	}
	return nil
}

// rollbackTimeout bounds a rollback that runs after the caller's context has ended.
const rollbackTimeout = 5 * time.Second

// rollbackPgx rolls tx back even when ctx is already done (a request past its deadline must still
// return its connection clean), but not for longer than rollbackTimeout.
func rollbackPgx(ctx context.Context, tx pgx.Tx) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	return tx.Rollback(ctx)
}
