package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// sqliteParams configures every connection the pool opens; modernc applies them on connect, so a
// reconnect after an error gets the same settings. busy_timeout comes first (the driver orders it so)
// so the pragmas after it wait for a lock held by another process instead of failing.
//   - journal_mode(WAL): readers never block the writer and commits fsync less.
//   - synchronous(NORMAL): safe with WAL (a power loss may drop the last commits, never corrupt).
//   - foreign_keys(1): SQLite leaves them off by default, per connection.
//   - _txlock=immediate: BEGIN takes the write lock up front. A deferred transaction that reads and
//     then writes fails with SQLITE_BUSY when another process wrote in between, and busy_timeout does
//     not help there; taking the lock at BEGIN makes it wait instead.
var sqliteParams = url.Values{
	"_pragma": {"busy_timeout(5000)", "foreign_keys(1)", "journal_mode(WAL)", "synchronous(NORMAL)"},
	"_txlock": {"immediate"},
}.Encode()

// OpenSQLite opens (creating if needed) the SQLite database file at path, with WAL, foreign keys and a
// busy timeout on every connection, and checks that it answers.
//
// The parent directory is created with mode 0700 and the file with 0600 (SQLite gives the -wal and -shm
// files the same mode), because stores hold password hashes and tokens.
//
// The pool has a single connection. SQLite serializes writers anyway; queueing them in database/sql
// waits fairly and honours ctx, where several connections would poll for the lock in SQLite's busy
// handler and fail after busy_timeout under load. The price: while a transaction or an unclosed *Rows
// holds the connection, another query on the *sql.DB waits for it, so code inside InTx must use the
// *sql.Tx only, and rows must be closed before the next query.
//
// ":memory:" and "file:" URIs are rejected: stores must be durable, and tests use a temporary file.
func OpenSQLite(ctx context.Context, path string) (*sql.DB, error) {
	if err := checkSQLitePath(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", path+"?"+sqliteParams)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	if err := checkSQLite(ctx, db); err != nil {
		return nil, errors.Join(fmt.Errorf("open sqlite %s: %w", path, err), db.Close())
	}
	return db, nil
}

func checkSQLitePath(path string) error {
	switch {
	case path == "":
		return errors.New("open sqlite: empty path")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		return fmt.Errorf("open sqlite %q: want a file path (in-memory and URI databases are not durable)", path)
	case strings.ContainsAny(path, "?\x00"):
		// The driver splits its DSN at '?': the rest of such a path would be read as parameters.
		return fmt.Errorf("open sqlite %q: path must not contain '?' or NUL", path)
	}
	return nil
}

// checkSQLite pings db and verifies the WAL switch took: SQLite silently keeps the old journal mode
// on file systems that cannot share memory between processes (some network mounts).
func checkSQLite(ctx context.Context, db *sql.DB) error {
	if err := db.PingContext(ctx); err != nil {
		return err
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	return nil
}
