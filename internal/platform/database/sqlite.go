package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// sqliteParams configures every connection the pool opens; modernc applies them on connect, so a
// reconnect after an error gets the same settings. busy_timeout comes first (the driver orders it so)
// so the pragmas after it wait for a lock held by another process instead of failing.
//   - journal_mode(WAL): readers never block the writer and commits fsync less.
//   - synchronous(NORMAL): safe with WAL (a power loss may drop the last commits, never corrupt).
//   - foreign_keys(1): SQLite leaves them off by default, per connection.
//   - temp_store(MEMORY): temporary files stay in memory, the sub-journal above all: the pages a
//     savepoint (Group's, one per function but the first) or a statement changes are copied there
//     first, so that they can be rolled back alone. By default it spills to a temporary file past
//     64 KiB, and a group transaction's functions then paid two pwrite calls per page they touched,
//     on the one writer.
//     In memory it is truncated at each RELEASE, so it holds one function's pages at most.
//   - wal_autocheckpoint(writerCheckpointPages): the WAL is copied into the database file by the
//     database's checkpointer, beside the writer (see checkpointer); the writer's own automatic
//     checkpoint, which runs inside a commit, is only the backstop that bounds the WAL.
//   - journal_size_limit(walSizeLimit): when the log starts over, a WAL file grown beyond it is cut
//     back to it (SQLite otherwise reuses the file at its largest until the database is closed).
//   - _txlock=immediate: BEGIN takes the write lock up front. A deferred transaction that reads and
//     then writes fails with SQLITE_BUSY when another process wrote in between, and busy_timeout does
//     not help there; taking the lock at BEGIN makes it wait instead.
var sqliteParams = url.Values{
	"_pragma": {"busy_timeout(5000)", "foreign_keys(1)", "journal_mode(WAL)", "synchronous(NORMAL)", "temp_store(MEMORY)",
		"wal_autocheckpoint(" + strconv.Itoa(writerCheckpointPages) + ")", "journal_size_limit(" + strconv.Itoa(walSizeLimit) + ")"},
	"_txlock": {"immediate"},
}.Encode()

// OpenSQLite opens the SQLite database file at path, creating it when it does not exist, with WAL,
// foreign keys and a busy timeout on every connection, and checks that it answers.
//
// An existing file must be a sound SQLite database; one that is empty, shorter than the SQLite header,
// lacks the SQLite magic, or fails PRAGMA quick_check is refused with an error that names the file, says
// what is wrong and what to do, and is left untouched. (SQLite itself would take an empty file for a
// new database, and the stores would migrate it: a lost or truncated file would silently become an
// empty service.) quick_check reads every page, so opening costs time in proportion to the file's size.
// A new file is made complete under a temporary name and then linked into place, so a crash during the
// first start never leaves an empty file at path.
//
// The parent directory is created with mode 0700 and the file with 0600 (SQLite gives the -wal and -shm
// files the same mode), because stores hold password hashes and tokens.
//
// The pool has a single connection. SQLite serializes writers anyway; queueing them in database/sql
// waits fairly and honours ctx, where several connections would poll for the lock in SQLite's busy
// handler and fail after busy_timeout under load. The price: while a transaction or an unclosed *Rows
// holds the connection, another query on the *sql.DB waits for it, so code inside InTx must use the
// *sql.Tx only, and rows must be closed before the next query. Reads outside a transaction can run
// beside it on the database's read pool instead (Reader), which the returned *sql.DB closes with it.
//
// The WAL is copied into the database file beside the writer, by a checkpointer with a connection of
// its own that the returned *sql.DB stops and closes with it (see CheckpointPages): the writer's own
// automatic checkpoint, which copies pages and syncs twice inside a commit while every other write
// waits, runs only as a backstop when the WAL grows long.
//
// Every connection, the writer and those of the read pool, keeps the last StmtCacheSize statements it
// ran prepared, so that running the same SQL again skips SQLite's parser and planner; callers change
// nothing (see StmtCacheSize).
//
// ":memory:" and "file:" URIs are rejected: stores must be durable, and tests use a temporary file.
//
// What the database's background work reports (a checkpoint that fails) goes to slog.Default();
// OpenSQLiteWith chooses the logger.
func OpenSQLite(ctx context.Context, path string) (*sql.DB, error) {
	return OpenSQLiteWith(ctx, path, SQLiteOptions{})
}

// SQLiteOptions configures OpenSQLiteWith.
type SQLiteOptions struct {
	// Logger receives what the database's background work reports: the checkpointer's first failure
	// after a success (a full or failing disk, a file it may not write; see CheckpointPages) and its
	// first success after failures. nil means slog.Default().
	Logger *slog.Logger
}

// OpenSQLiteWith is OpenSQLite with options.
func OpenSQLiteWith(ctx context.Context, path string, o SQLiteOptions) (*sql.DB, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if err := checkSQLitePath(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	err := checkSQLiteFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createSQLite(ctx, path); err != nil {
			return nil, fmt.Errorf("open sqlite %s: create: %w", path, err)
		}
		// Ours, or one that another process created meanwhile: check it all the same.
		err = checkSQLiteFile(path)
	}
	if err != nil {
		return nil, err
	}
	db, err := openSQLiteWithReader(path, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := checkSQLite(ctx, db); err != nil {
		err = errors.Join(badSQLite(path, err), db.Close())
		return nil, err
	}
	return db, nil
}

// openSQLitePool opens the single-connection writer pool on path, with no read pool.
func openSQLitePool(path string) (*sql.DB, error) {
	c, err := sqliteConnector(path + "?" + sqliteParams)
	if err != nil {
		return nil, err
	}
	return openPool(c, 1), nil
}

// openPool opens a pool of at most conns connections from c, all kept open once made.
func openPool(c driver.Connector, conns int) *sql.DB {
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	return db
}

// sqliteMagic starts every SQLite 3 database file; the header it begins is 100 bytes long.
const (
	sqliteMagic      = "SQLite format 3\x00"
	sqliteHeaderSize = 100
)

// errBadSQLite ends every error about a database file that exists but cannot be used as it is.
const errBadSQLite = "restore it from a backup, or remove it to start with an empty database"

// checkSQLiteFile checks, without writing anything, that the existing file at path can be a SQLite
// database. It returns an error matching fs.ErrNotExist when there is no file.
func checkSQLiteFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	var problem string
	switch {
	case !fi.Mode().IsRegular():
		problem = "is not a regular file"
	case fi.Size() == 0:
		problem = "is empty (0 bytes)"
	case fi.Size() < sqliteHeaderSize:
		problem = fmt.Sprintf("is truncated (%d bytes, shorter than the %d-byte SQLite header)", fi.Size(), sqliteHeaderSize)
	default:
		magic := make([]byte, len(sqliteMagic))
		if _, err := io.ReadFull(f, magic); err != nil {
			return fmt.Errorf("open sqlite %s: read header: %w", path, err)
		}
		if string(magic) != sqliteMagic {
			problem = "is not a SQLite database (it does not start with the SQLite header)"
		}
	}
	if problem != "" {
		return fmt.Errorf("open sqlite %s: the file %s; %s", path, problem, errBadSQLite)
	}
	return nil
}

// badSQLite turns SQLite's verdict that a file is corrupt or not a database into the same advice as
// checkSQLiteFile's; other errors are wrapped as they are.
func badSQLite(path string, err error) error {
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		switch coded.Code() & 0xff { // the primary result code, without the extended bits
		case sqliteCorrupt, sqliteNotADB:
			return fmt.Errorf("open sqlite %s: the file is damaged (%w); %s", path, err, errBadSQLite)
		}
	}
	var damaged *integrityError
	if errors.As(err, &damaged) {
		return fmt.Errorf("open sqlite %s: the file fails its integrity check (%w); %s", path, err, errBadSQLite)
	}
	return fmt.Errorf("open sqlite %s: %w", path, err)
}

// SQLite's primary result codes for a damaged file and for a file that is not a database.
const (
	sqliteCorrupt = 11
	sqliteNotADB  = 26
)

// integrityError is what PRAGMA quick_check found wrong.
type integrityError struct{ report string }

func (e *integrityError) Error() string { return "PRAGMA quick_check: " + e.report }

// createSQLite makes a new database at path, which must not exist: it initializes one (WAL, so the
// header is written) under a temporary name in the same directory and links it into place, so path
// never holds a half-made file. If another process created path meanwhile, its file is kept.
func createSQLite(ctx context.Context, path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new-*")
	if err != nil {
		return err
	}
	tmpPath := tmp.Name()
	// CreateTemp makes the file 0600, the mode the database keeps.
	defer os.Remove(tmpPath)
	if err := tmp.Close(); err != nil {
		return err
	}
	db, err := openSQLitePool(tmpPath)
	if err != nil {
		return err
	}
	// Switching to WAL writes the header; closing the last connection checkpoints and removes the
	// temporary -wal and -shm files.
	if err := errors.Join(checkSQLite(ctx, db), db.Close()); err != nil {
		return err
	}
	if err := syncFile(tmpPath); err != nil {
		return err
	}
	if err := os.Link(tmpPath, path); err != nil && !errors.Is(err, fs.ErrExist) {
		// Some file systems have no hard links; rename is atomic too, at the price of replacing a
		// file created since the check above.
		if err := os.Rename(tmpPath, path); err != nil {
			return err
		}
	}
	return syncFile(filepath.Dir(path))
}

// syncFile flushes a file or a directory (the new name in it) to stable storage.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
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

// checkSQLite pings db, verifies the WAL switch took (SQLite silently keeps the old journal mode on
// file systems that cannot share memory between processes, such as some network mounts) and runs
// PRAGMA quick_check, which returns an *integrityError when it finds damage.
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
	return quickCheck(ctx, db)
}

// quickCheck runs PRAGMA quick_check, which answers one row "ok" or rows describing the damage (up to
// 100), and may also fail outright on a badly damaged file.
func quickCheck(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return err
	}
	defer rows.Close()
	var report []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		report = append(report, line)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(report) == 1 && report[0] == "ok" {
		return nil
	}
	return &integrityError{report: strings.Join(report, "; ")}
}
