package database

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"lastmile/internal/platform/apperr"
)

// unavailableMessage is the caller-facing message of a database that cannot be reached.
const unavailableMessage = "the database is unavailable; try again"

// Classify returns err marked apperr.Unavailable when it says that the database could not be reached
// or the connection to it broke (see IsUnavailable), so that the call answers UNAVAILABLE (HTTP 503)
// and clients retry, rather than Internal. Any other error, nil, and an error that already carries an
// apperr code are returned unchanged. Every store's error mapping (its MapError) and InTx call it, so
// that the rule lives here alone.
//
// A database whose disk is full (SQLite's SQLITE_FULL, PostgreSQL's disk_full, ENOSPC from a file) is
// unavailable too, with its own message: nothing the caller sent is wrong, and the same call succeeds
// once the operator frees space, so it is not an internal error.
func Classify(err error) error {
	if err == nil || apperr.As(err) != nil {
		return err
	}
	if IsStorageFull(err) {
		return apperr.Wrap(apperr.Unavailable, err, storageFullMessage)
	}
	if !IsUnavailable(err) {
		return err
	}
	return apperr.Wrap(apperr.Unavailable, err, unavailableMessage)
}

// storageFullMessage is the caller-facing message of a database that cannot write for want of space.
const storageFullMessage = "the server's storage is full; try again later"

// IsStorageFull reports whether err says that a write failed because the disk (or the database's size
// limit) is full: SQLite's SQLITE_FULL (in any extended form), PostgreSQL's disk_full (53100), or
// ENOSPC or EDQUOT from the file system.
func IsStorageFull(err error) bool {
	var (
		se    *sqlite.Error
		pgErr *pgconn.PgError
	)
	switch {
	case errors.As(err, &se):
		return se.Code()&0xff == sqlite3.SQLITE_FULL
	case errors.As(err, &pgErr):
		return pgErr.Code == "53100"
	}
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// unavailableStates are the PostgreSQL error codes, besides class 08 (connection exception), of a
// server that is going away or refuses connections: admin_shutdown, crash_shutdown,
// cannot_connect_now (starting up or shutting down) and too_many_connections.
var unavailableStates = map[string]bool{"57P01": true, "57P02": true, "57P03": true, "53300": true}

// IsUnavailable reports whether err is a connection-level failure rather than an answer of the
// database: a refused or failed connection attempt (pgconn.ConnectError, which also wraps a connect
// that ran out of time), a connection that broke (driver.ErrBadConn, sql.ErrConnDone, an unexpected
// EOF, a failed network operation), or PostgreSQL saying that it cannot serve (class 08, shutdown,
// starting up, too many connections). A constraint violation, a syntax error or the caller's context
// ending is not: a bare context error already answers Canceled or DeadlineExceeded (a deadline that
// ran out while connecting is a ConnectError, and so Unavailable).
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var (
		connectErr *pgconn.ConnectError
		pgErr      *pgconn.PgError
		netErr     *net.OpError
	)
	switch {
	case errors.As(err, &connectErr):
		return true
	case errors.As(err, &pgErr):
		return strings.HasPrefix(pgErr.Code, "08") || unavailableStates[pgErr.Code]
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return true
	case errors.As(err, &netErr):
		return true
	}
	return false
}
