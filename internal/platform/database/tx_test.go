package database_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/platform/database"
)

var errAbort = errors.New("abort")

// txCase is one way a transaction body can end, with the state it must leave behind.
type txCase struct {
	name      string
	fnErr     error // returned by the body after inserting
	panicWith any   // when set, the body panics after inserting
	wantRow   bool
}

var txCases = []txCase{
	{name: "commit", wantRow: true},
	{name: "error rolls back", fnErr: errAbort},
	{name: "panic rolls back", panicWith: "boom"},
}

// runTx calls in, whose transaction body inserts a row and then calls end, which ends as tc says;
// runTx checks the error or the re-raised panic.
func runTx(t *testing.T, tc txCase, in func(end func() error) error) {
	t.Helper()
	var recovered any
	err := func() (err error) {
		defer func() { recovered = recover() }()
		return in(func() error {
			if tc.panicWith != nil {
				panic(tc.panicWith)
			}
			return tc.fnErr
		})
	}()
	if recovered != tc.panicWith {
		t.Errorf("recovered panic = %v, want %v", recovered, tc.panicWith)
	}
	if tc.panicWith == nil && !errors.Is(err, tc.fnErr) {
		t.Errorf("error = %v, want %v", err, tc.fnErr)
	}
}

func TestInTx(t *testing.T) {
	for i, tc := range txCases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			db := migratedSQLite(t)
			id := 100 + i
			runTx(t, tc, func(end func() error) error {
				return database.InTx(ctx, db, func(tx *sql.Tx) error {
					if _, err := tx.ExecContext(ctx, "INSERT INTO things (id, name) VALUES (?, 'x')", id); err != nil {
						return err
					}
					return end()
				})
			})
			var n int
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM things WHERE id = ?", id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if got := n == 1; got != tc.wantRow {
				t.Errorf("row present = %v, want %v", got, tc.wantRow)
			}
		})
	}
}

func TestInPgxTx(t *testing.T) {
	pool := migratedPostgres(t)
	for i, tc := range txCases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			id := 100 + i
			runTx(t, tc, func(end func() error) error {
				return database.InPgxTx(ctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, "INSERT INTO things (id, name) VALUES ($1, 'x')", id); err != nil {
						return err
					}
					return end()
				})
			})
			var n int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM things WHERE id = $1", id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if got := n == 1; got != tc.wantRow {
				t.Errorf("row present = %v, want %v", got, tc.wantRow)
			}
			// A leaked transaction would keep its connection busy.
			if got := pool.Stat().AcquiredConns(); got != 0 {
				t.Errorf("acquired connections after InPgxTx = %d, want 0", got)
			}
		})
	}
}

func TestInPgxTxWithRetriesSerializationFailures(t *testing.T) {
	ctx := testContext(t)
	pool := migratedPostgres(t)

	// Two read-modify-write increments that both read before either writes: under serializable
	// isolation one of them fails with 40001 and must be retried.
	var attempts atomic.Int32
	var bothRead sync.WaitGroup
	bothRead.Add(2)
	increment := func(first *sync.Once) error {
		return database.InPgxTxWith(ctx, pool, database.SerializableTx, func(tx pgx.Tx) error {
			attempts.Add(1)
			var name string
			if err := tx.QueryRow(ctx, "SELECT name FROM things WHERE id = 1").Scan(&name); err != nil {
				return err
			}
			first.Do(func() { bothRead.Done(); bothRead.Wait() })
			_, err := tx.Exec(ctx, "UPDATE things SET name = $1 WHERE id = 1", name+"+")
			return err
		})
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = increment(new(sync.Once)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("increment #%d: %v", i+1, err)
		}
	}
	var got string
	if err := pool.QueryRow(ctx, "SELECT name FROM things WHERE id = 1").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "seed++"; got != want {
		t.Errorf("name = %q, want %q (no lost update)", got, want)
	}
	if got := attempts.Load(); got != 3 {
		t.Errorf("attempts = %d, want 3 (one retry)", got)
	}
}

func TestInPgxTxWithoutRetriesReturnsSerializationFailure(t *testing.T) {
	ctx := testContext(t)
	pool := migratedPostgres(t)
	var bothRead sync.WaitGroup
	bothRead.Add(2)
	opts := database.TxOptions{TxOptions: pgx.TxOptions{IsoLevel: pgx.Serializable}}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			errs[i] = database.InPgxTxWith(ctx, pool, opts, func(tx pgx.Tx) error {
				var name string
				if err := tx.QueryRow(ctx, "SELECT name FROM things WHERE id = 1").Scan(&name); err != nil {
					return err
				}
				bothRead.Done()
				bothRead.Wait()
				_, err := tx.Exec(ctx, "UPDATE things SET name = $1 WHERE id = 1", name+"+")
				return err
			})
		})
	}
	wg.Wait()
	failed := errs[0]
	if failed == nil {
		failed = errs[1]
	}
	var pgErr *pgconn.PgError
	if (errs[0] == nil) == (errs[1] == nil) || !errors.As(failed, &pgErr) || pgErr.Code != "40001" {
		t.Fatalf("errors = %v, want one nil and one serialization_failure (40001)", errs)
	}
}

func TestInPgxTxWithRejectsBadRetries(t *testing.T) {
	for _, n := range []int{-1, database.MaxTxRetries + 1} {
		// The options are checked before the pool is touched.
		err := database.InPgxTxWith(context.Background(), (*pgxpool.Pool)(nil), database.TxOptions{Retries: n}, func(pgx.Tx) error { return nil })
		if err == nil {
			t.Errorf("InPgxTxWith(Retries: %d) = nil, want an error", n)
		}
	}
}
