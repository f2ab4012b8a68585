package database

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"lastmile/internal/platform/telemetry/logtest"
)

// walStateOf reads the WAL state of the database at path from its -shm file.
func walStateOf(t *testing.T, path string) walState {
	t.Helper()
	f, err := os.Open(path + "-shm")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, ok := readWALState(f)
	if !ok {
		t.Fatalf("readWALState(%s-shm): not a readable WAL index", path)
	}
	return st
}

// waitFor polls cond until it holds, failing the test after a generous hang guard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestCheckpointerCopiesTheWALBesideTheWriter writes more pages than CheckpointPages (and fewer than
// the writer's own threshold, so the writer never checkpoints) and waits for them to reach the
// database file, then checks that the next write starts the WAL over: the WAL stays short with no
// checkpoint on the writer.
func TestCheckpointerCopiesTheWALBesideTheWriter(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "ckpt.db")
	db, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	defer db.Close()
	v, ok := sqliteCheckpointers.Load(db)
	if !ok {
		t.Fatal("OpenSQLite's database has no checkpointer")
	}
	cp := v.(*checkpointer)
	var auto int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil {
		t.Fatal(err)
	}
	if auto != writerCheckpointPages {
		t.Fatalf("the writer's wal_autocheckpoint = %d, want %d", auto, writerCheckpointPages)
	}

	// About 1.5 pages per row: 1,000 rows put some 1,500 pages in the WAL, in one transaction.
	const rows = CheckpointPages
	fillWAL(ctx, t, db, rows)
	if st := walStateOf(t, path); st.frames < CheckpointPages || st.frames >= writerCheckpointPages {
		t.Fatalf("after the insert the WAL holds %d frames, want between %d and %d", st.frames, CheckpointPages, writerCheckpointPages)
	}

	// The database file grows only when a checkpoint copies pages into it.
	// The checkpointer counts its run once the checkpoint's statement has returned, a moment after
	// the WAL index says the frames were copied.
	waitFor(t, "the checkpointer to copy the WAL into the database file", func() bool {
		st := walStateOf(t, path)
		runs, _ := cp.stats()
		return st.backfilled == st.frames && runs >= 1
	})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if min := int64(rows) * 6000; fi.Size() < min {
		t.Errorf("database file is %d bytes after the checkpoint, want at least %d", fi.Size(), min)
	}
	runs, err := cp.stats()
	if runs < 1 || err != nil {
		t.Errorf("checkpointer ran %d checkpoints, last error %v; want at least 1 and no error", runs, err)
	}

	// Everything copied: the next write starts the WAL over.
	if _, err := db.ExecContext(ctx, "INSERT INTO t (id, v) VALUES ($1, x'00')", rows); err != nil {
		t.Fatal(err)
	}
	if st := walStateOf(t, path); st.frames > 10 {
		t.Errorf("after a small write following the checkpoint the WAL holds %d frames, want a few (started over)", st.frames)
	}
	var n int
	if err := Reader(db).QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != rows+1 {
		t.Errorf("count = %d, %v; want %d", n, err, rows+1)
	}
}

func TestReadWALState(t *testing.T) {
	hdr := make([]byte, walIndexHdrSize)
	binary.NativeEndian.PutUint32(hdr, walIndexVersion)
	hdr[walIndexIsInit] = 1
	binary.NativeEndian.PutUint32(hdr[walIndexMxFrame:], 1234)
	index := func(h1, h2 []byte, backfilled uint32) []byte {
		b := append(append(bytes.Clone(h1), h2...), make([]byte, 40)...)
		binary.NativeEndian.PutUint32(b[walIndexBackfill:], backfilled)
		return b
	}
	torn := bytes.Clone(hdr)
	torn[walIndexMxFrame] ^= 1
	uninit := bytes.Clone(hdr)
	uninit[walIndexIsInit] = 0
	other := bytes.Clone(hdr)
	binary.NativeEndian.PutUint32(other, walIndexVersion+1)

	for _, tc := range []struct {
		name   string
		index  []byte
		want   walState
		wantOK bool
	}{
		{"sound", index(hdr, hdr, 1000), walState{frames: 1234, backfilled: 1000}, true},
		{"torn", index(hdr, torn, 1000), walState{}, false},
		{"not initialized", index(uninit, uninit, 0), walState{}, false},
		{"other version", index(other, other, 0), walState{}, false},
		{"short", hdr, walState{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := readWALState(bytes.NewReader(tc.index))
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("readWALState = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// fillWAL creates table t and inserts rows rows of 6,000 bytes each in one transaction: about 1.5 pages
// of WAL per row.
func fillWAL(ctx context.Context, t *testing.T, db *sql.DB, rows int) {
	t.Helper()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	err := InTx(ctx, db, func(tx *sql.Tx) error {
		for i := range rows {
			if _, err := tx.ExecContext(ctx, "INSERT INTO t (id, v) VALUES ($1, zeroblob(6000))", i); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
}

// testLogger logs text lines without their time to w.
func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
}

// TestCheckpointerLogsItsFailures makes the checkpointer of a database opened with a logger fail (its
// connection is closed under it) and fills the WAL past CheckpointPages: the failure is logged to that
// logger, naming the database and the error.
func TestCheckpointerLogsItsFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "ckpt.db")
	var logs logtest.Buffer
	db, err := OpenSQLiteWith(ctx, path, SQLiteOptions{Logger: testLogger(&logs)})
	if err != nil {
		t.Fatalf("OpenSQLiteWith: %v", err)
	}
	defer db.Close()
	v, ok := sqliteCheckpointers.Load(db)
	if !ok {
		t.Fatal("OpenSQLiteWith's database has no checkpointer")
	}
	cp := v.(*checkpointer)
	// Once the WAL index is open, the checkpointer's connection is used for checkpoints only.
	waitFor(t, "the checkpointer to open the WAL index", func() bool { return cp.shm.opened() != nil })
	if err := cp.db.Close(); err != nil {
		t.Fatal(err)
	}
	fillWAL(ctx, t, db, CheckpointPages)
	waitFor(t, "the checkpointer's failure to be logged", func() bool { return logs.String() != "" })
	want := fmt.Sprintf("level=WARN msg=\"sqlite checkpoint failed; the writer's own checkpoint bounds the WAL until one succeeds\" database=%s error=\"sql: database is closed\"\n", path)
	if got := logs.String(); got != want {
		t.Errorf("logged:\n%s\nwant:\n%s", got, want)
	}
}

// TestCheckpointerLogsThatItCannotConnect starts a checkpointer on a database it cannot open (its
// directory does not exist): the failure is logged.
func TestCheckpointerLogsThatItCannotConnect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "ckpt.db")
	var logs logtest.Buffer
	cp, err := startCheckpointer(path, testLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the checkpointer's failure to be logged", func() bool { return logs.String() != "" })
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("level=WARN msg=\"sqlite checkpoint failed; the writer's own checkpoint bounds the WAL until one succeeds\" database=%s error=\"connect: unable to open database file (14)\"\n", path)
	if got := logs.String(); got != want {
		t.Errorf("logged:\n%s\nwant:\n%s", got, want)
	}
}

// TestCheckpointerLogsOncePerOutage runs checkpoints that fail, then succeed: the first failure is
// logged, the next ones are not (the checkpointer polls every few milliseconds while the WAL grows),
// and the first success after them is.
func TestCheckpointerLogsOncePerOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "ckpt.db")
	db, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	defer db.Close()
	c, err := sqliteConnector(path + "?" + sqliteCheckpointParams)
	if err != nil {
		t.Fatal(err)
	}
	good := openPool(c, 1)
	defer good.Close()
	closed := openPool(c, 1)
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	var logs logtest.Buffer
	cp := &checkpointer{path: path, logger: testLogger(&logs), ctx: ctx}
	for i, step := range []struct {
		db   *sql.DB
		want string
	}{
		{good, ""},
		{closed, fmt.Sprintf("level=WARN msg=\"sqlite checkpoint failed; the writer's own checkpoint bounds the WAL until one succeeds\" database=%s error=\"sql: database is closed\"\n", path)},
		{closed, ""},
		{closed, ""},
		{good, fmt.Sprintf("level=INFO msg=\"sqlite checkpoints succeed again\" database=%s\n", path)},
		{good, ""},
	} {
		before := len(logs.String())
		cp.db = step.db
		cp.checkpoint()
		if got := logs.String()[before:]; got != step.want {
			t.Errorf("checkpoint %d logged %q, want %q", i, got, step.want)
		}
	}
	if runs, err := cp.stats(); runs != 6 || err != nil {
		t.Errorf("stats = %d, %v; want 6, nil", runs, err)
	}
}

// TestWALIsCutBackAfterALongRead holds a read transaction (its snapshot) while the writer writes more
// than walSizeLimit of WAL, which no checkpoint can copy past the snapshot; once the read ends, the
// writer's backstop copies the log and the next write starts it over, and the WAL file is cut back to
// walSizeLimit instead of keeping its largest size until the database is closed.
func TestWALIsCutBackAfterALongRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "long-read.db")
	db, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	defer db.Close()
	fillWAL(ctx, t, db, 1)
	read, err := Reader(db).BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := read.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("count in the long read = %d, %v; want 1", n, err)
	}
	// About 1.5 pages of 4 KiB per row: 12,000 rows are some 74 MB of WAL, past the limit.
	const rows = 12_000
	for i := 1; i < rows; i += 1000 {
		err := InTx(ctx, db, func(tx *sql.Tx) error {
			for j := i; j < i+1000; j++ {
				if _, err := tx.ExecContext(ctx, "INSERT INTO t (id, v) VALUES ($1, zeroblob(6000))", j); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("insert: %v", err)
		}
	}
	walSize := func() int64 {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if size := walSize(); size <= walSizeLimit {
		t.Fatalf("WAL file is %d bytes with the read open, want more than %d (the read holds every frame)", size, walSizeLimit)
	}
	if err := read.Rollback(); err != nil {
		t.Fatal(err)
	}
	// The read is over: the next commits copy the log (the writer's backstop, or the checkpointer)
	// and start it over, cutting the file back.
	id := rows + 1 // ids 0 to rows are taken
	waitFor(t, "the WAL file to be cut back to walSizeLimit", func() bool {
		if _, err := db.ExecContext(ctx, "INSERT INTO t (id, v) VALUES ($1, x'00')", id); err != nil {
			t.Fatal(err)
		}
		id++
		return walSize() <= walSizeLimit
	})
	if size := walSize(); size != walSizeLimit {
		t.Errorf("WAL file is %d bytes after the log started over, want walSizeLimit, %d", size, walSizeLimit)
	}
	if err := Reader(db).QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != id {
		t.Errorf("count = %d, %v; want %d", n, err, id)
	}
}
