package database

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sync"
)

// SQLiteReadConns is how many connections the read pool of a database opened with OpenSQLite holds.
// WAL lets them read while the one writer writes; more than the machine's cores would only queue in
// SQLite instead of in database/sql.
const SQLiteReadConns = 4

// sqliteReadParams configures the read pool's connections: the writer's busy timeout (a reader waits
// for a lock only briefly, while a checkpoint or WAL recovery runs), and query_only, so that a write
// sent to the read pool by mistake fails (SQLITE_READONLY) instead of competing with the writer. The
// writer's journal_mode, synchronous and foreign_keys are not needed to read; journal_mode(WAL) is a
// setting of the file, which the writer made.
var sqliteReadParams = url.Values{
	"_pragma": {"busy_timeout(5000)", "query_only(1)"},
}.Encode()

// sqliteReaders maps the writer *sql.DB that OpenSQLite returned to its read pool, for Reader. An
// entry lives from OpenSQLite to the writer's Close.
var sqliteReaders sync.Map // *sql.DB -> *sql.DB

// Reader returns the pool on which reads outside a transaction should run: for a database opened with
// OpenSQLite, its read pool (SQLiteReadConns read-only connections to the same file); for any other
// *sql.DB (PostgreSQL through SQLDB, whose pool serves reads and writes alike), db itself.
//
// Under WAL a read on the read pool sees every transaction that committed before it began, on any
// connection, so a read after a write's commit has returned sees the write, as on the writer. It does
// not see an open transaction's writes: a read that must, runs on that transaction's *sql.Tx. Writes
// through the read pool fail. Closing db closes its read pool; do not close the read pool itself.
func Reader(db *sql.DB) *sql.DB {
	if r, ok := sqliteReaders.Load(db); ok {
		return r.(*sql.DB)
	}
	return db
}

// openSQLiteWithReader opens the writer pool on path (as openSQLitePool) and its read pool, registered
// for Reader and closed when the writer is, and its checkpointer, which logs to logger.
func openSQLiteWithReader(path string, logger *slog.Logger) (*sql.DB, error) {
	wc, err := sqliteConnector(path + "?" + sqliteParams)
	if err != nil {
		return nil, err
	}
	rc, err := sqliteConnector(path + "?" + sqliteReadParams)
	if err != nil {
		return nil, err
	}
	cp, err := startCheckpointer(path, logger)
	if err != nil {
		return nil, err
	}
	read := openPool(rc, SQLiteReadConns)
	c := &writerConnector{Connector: wc, read: read, checkpointer: cp}
	db := openPool(c, 1)
	c.db = db
	sqliteReaders.Store(db, read)
	sqliteCheckpointers.Store(db, cp)
	return db, nil
}

// sqliteCheckpointers maps the writer *sql.DB that OpenSQLite returned to its checkpointer, for tests.
var sqliteCheckpointers sync.Map // *sql.DB -> *checkpointer

// writerConnector is the connector of a writer pool that owns a read pool and a checkpointer:
// database/sql calls its Close when the writer closes (sql.DB.Close closes a connector that is an
// io.Closer).
type writerConnector struct {
	driver.Connector
	db           *sql.DB // the writer, the key in sqliteReaders and sqliteCheckpointers
	read         *sql.DB
	checkpointer *checkpointer

	once sync.Once
	err  error
}

// Close stops the checkpointer, closes the read pool, and forgets both.
func (c *writerConnector) Close() error {
	c.once.Do(func() {
		sqliteCheckpointers.Delete(c.db)
		sqliteReaders.Delete(c.db)
		// The read pool first: the checkpointer closes the WAL index file it reads when it is the
		// last of the process on the path, and that must come after every SQLite connection's close
		// (shmFiles).
		var errs []error
		if err := c.read.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close sqlite read pool: %w", err))
		}
		if err := c.checkpointer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close sqlite checkpointer: %w", err))
		}
		c.err = errors.Join(errs...)
	})
	return c.err
}

var _ io.Closer = (*writerConnector)(nil)
