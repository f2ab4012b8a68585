package database_test

import (
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

// openWithReader opens a SQLite database with one table t(v) and returns it with its read pool.
func openWithReader(t *testing.T) (db, read *sql.DB) {
	t.Helper()
	ctx := testContext(t)
	db, err := database.OpenSQLite(ctx, filepath.Join(t.TempDir(), "read.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (v INTEGER NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	read = database.Reader(db)
	if read == db {
		t.Fatal("Reader(OpenSQLite's db) returned the writer")
	}
	return db, read
}

func TestReaderSeesCommittedWrites(t *testing.T) {
	ctx := testContext(t)
	db, read := openWithReader(t)
	count := func() int {
		t.Helper()
		var n int
		if err := read.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
			t.Fatalf("read: %v", err)
		}
		return n
	}
	if got := count(); got != 0 {
		t.Fatalf("count before the writes = %d, want 0", got)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO t (v) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 1 {
		t.Fatalf("count after an autocommit insert = %d, want 1", got)
	}
	// A transaction's writes are seen once it commits, not before.
	err := database.InTx(ctx, db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO t (v) VALUES (2)"); err != nil {
			return err
		}
		if got := count(); got != 1 {
			t.Errorf("count during the transaction = %d, want 1", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("InTx: %v", err)
	}
	if got := count(); got != 2 {
		t.Fatalf("count after the commit = %d, want 2", got)
	}
}

func TestReaderDoesNotBlockWriter(t *testing.T) {
	ctx := testContext(t)
	db, read := openWithReader(t)
	for i := range 3 {
		if _, err := db.ExecContext(ctx, "INSERT INTO t (v) VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	// An open read (rows not yet drained) holds its snapshot...
	rows, err := read.QueryContext(ctx, "SELECT v FROM t ORDER BY v")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("first row: %v", rows.Err())
	}
	// ...while a write transaction commits beside it.
	err = database.InTx(ctx, db, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO t (v) VALUES (10)")
		return err
	})
	if err != nil {
		t.Fatalf("write during an open read: %v", err)
	}
	var got []int
	for ok := true; ok; ok = rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != 0 || got[1] != 1 || got[2] != 2 {
		t.Fatalf("the open read returned %v, want its snapshot [0 1 2]", got)
	}
	var n int
	if err := read.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("a new read counts %d rows, want 4", n)
	}
}

func TestReaderIsReadOnly(t *testing.T) {
	ctx := testContext(t)
	db, read := openWithReader(t)
	// Every connection of the pool refuses writes, not only the first.
	var conns []*sql.Conn
	for range database.SQLiteReadConns {
		c, err := read.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		_, err := c.ExecContext(ctx, "INSERT INTO t (v) VALUES (1)")
		var coded interface{ Code() int }
		if !errors.As(err, &coded) || coded.Code()&0xff != 8 { // SQLITE_READONLY
			t.Errorf("write on read connection %d: err = %v, want SQLITE_READONLY", i, err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("count after refused writes = %d, want 0", n)
	}
}

func TestCloseClosesReader(t *testing.T) {
	ctx := testContext(t)
	db, err := database.OpenSQLite(ctx, filepath.Join(t.TempDir(), "close.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	read := database.Reader(db)
	if err := read.PingContext(ctx); err != nil {
		t.Fatalf("ping the read pool: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := read.PingContext(ctx); err == nil || !strings.Contains(err.Error(), "database is closed") {
		t.Fatalf("ping the read pool after Close: err = %v, want database is closed", err)
	}
	if got := database.Reader(db); got != db {
		t.Fatal("Reader of a closed database still returns its read pool")
	}
}

func TestReaderOfOtherDatabasesIsItself(t *testing.T) {
	db := databasetest.SQLite(t)
	if database.Reader(db) == db {
		t.Fatal("Reader(databasetest.SQLite) returned the writer")
	}
	other, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "plain.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if database.Reader(other) != other {
		t.Fatal("Reader of a *sql.DB not opened by OpenSQLite is not itself")
	}
}
