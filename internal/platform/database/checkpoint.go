package database

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// CheckpointPages is how many WAL frames (pages) not yet copied into a database opened with OpenSQLite
// make its checkpointer copy them: four times SQLite's own automatic threshold (wal_autocheckpoint's
// default, 1,000), because a checkpoint writes each page once however many frames of it the WAL holds,
// and the hot pages (index edges, sessions, the event log's end) are in most of them.
//
// SQLite starts the log over only when a write begins with every frame copied, which a checkpoint
// running beside a steady stream of writes seldom leaves: under load the log grows to the writer's
// backstop (writerCheckpointPages frames: with 4 KiB pages and each frame's 24-byte header, 65.9 MB)
// and the commit that crosses it, in every cycle, and the file keeps its largest size. A reader that
// holds an old snapshot (a long read, a backup) stops every checkpoint at its snapshot, so the log
// grows beyond for as long as the read lasts; walSizeLimit gives that space back afterwards.
const CheckpointPages = 4000

// walSizeLimit is the size in bytes a WAL file grown beyond it is cut back to when the log starts over
// (journal_size_limit), once a long read that held the log back has ended: a little above what the
// writer's backstop leaves, so that a log at the backstop is not cut and grown again in every cycle.
const walSizeLimit = 64 << 20

// writerCheckpointPages is the writer's own automatic checkpoint (wal_autocheckpoint), a backstop that
// bounds the WAL when the checkpointer cannot keep it short: SQLite starts the WAL over only when a write
// transaction begins with every frame copied, which the checkpointer, running beside the writer, may
// miss under a steady stream of writes. The writer then copies the few frames the checkpointer has not
// (a commit that takes the WAL past this runs that checkpoint), and the next write starts the WAL over.
const writerCheckpointPages = 4 * CheckpointPages

// Polling of the checkpointer: how often it reads the WAL's size while the WAL grows, and how far it
// backs off while nothing changes.
const (
	checkpointPoll    = 10 * time.Millisecond
	checkpointPollMax = time.Second
)

// sqliteCheckpointParams configures the checkpointer's connection: the writer's synchronous setting,
// which says how a checkpoint syncs (the WAL before copying, the database file after), query_only so
// that it can write nothing else, and a busy timeout for opening (a PASSIVE checkpoint itself never
// waits for a lock).
var sqliteCheckpointParams = url.Values{
	"_pragma": {"busy_timeout(5000)", "query_only(1)", "synchronous(NORMAL)"},
}.Encode()

// checkpointer copies a database's WAL into its file (PRAGMA wal_checkpoint(PASSIVE)) on a connection
// of its own, whenever CheckpointPages frames are waiting, so that the writer seldom does: SQLite's
// automatic checkpoint runs inside the commit that takes the WAL past its threshold, on the one writer
// connection, where copying the pages and the two fsyncs (the WAL, then the database file) hold up
// every other write. A PASSIVE checkpoint takes no lock that the writer or the readers need, so they run
// on beside it; it copies what no reader still needs, and the rest the next time.
//
// Durability is SQLite's: a checkpoint copies frames of committed transactions, already in the WAL, and
// syncs as the writer's checkpoint would (synchronous=NORMAL); what was acknowledged is in the WAL
// either way.
//
// It learns the WAL's length and how much of it was copied from the WAL index (the -shm file, whose
// header SQLite documents in https://www.sqlite.org/walformat.html, section 2.2), reading the file:
// no statement reports the WAL's length without checkpointing it. A value read while SQLite updates it
// is only ever a reason to look again at the next poll.
type checkpointer struct {
	db     *sql.DB  // one connection, sqliteCheckpointParams
	shm    *shmFile // the WAL index, shared by the checkpointers of the same path
	path   string   // the database, for the log
	logger *slog.Logger

	stop chan struct{}
	ctx  context.Context // cancelled by Close: a running checkpoint or connect is interrupted
	quit context.CancelFunc
	done chan struct{}
	once sync.Once

	mu        sync.Mutex
	runs      int   // checkpoints run, for tests
	lastError error // the last checkpoint's error, for tests
	failing   bool  // the last checkpoint failed and was logged: the next success is logged too
}

// startCheckpointer opens the checkpointer's connection to the database at path and starts it. Its
// failures go to logger.
func startCheckpointer(path string, logger *slog.Logger) (*checkpointer, error) {
	c, err := sqliteConnector(path + "?" + sqliteCheckpointParams)
	if err != nil {
		return nil, err
	}
	name := path
	// SQLite names the WAL index after the database file with symbolic links resolved: a database
	// opened through a link has it beside the file linked to.
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	cp := &checkpointer{db: openPool(c, 1), shm: acquireShm(path + "-shm"), path: name, logger: logger,
		stop: make(chan struct{}), done: make(chan struct{})}
	cp.ctx, cp.quit = context.WithCancel(context.Background())
	go cp.loop()
	return cp, nil
}

// Close stops the checkpointer, closes its connection and lets go of the WAL index file. The database's
// other connections should be closed first: the file is closed when no checkpointer of the process
// uses it, and closing it drops the process's locks on it (shmFiles).
func (cp *checkpointer) Close() error {
	var err error
	cp.once.Do(func() {
		close(cp.stop)
		cp.quit() // a checkpoint interrupted part way is sound: the next one copies the rest
		<-cp.done
		err = cp.db.Close()
		cp.shm.release()
	})
	return err
}

// shmFiles are the WAL index files the checkpointers of this process read, by absolute path: each is
// opened once and closed only when the last checkpointer of its path has closed. Closing a descriptor
// of a file drops every POSIX advisory lock the process holds on that file, whichever descriptor took
// it, and SQLite's connections hold such locks on the -shm file as long as they are open (a shared lock
// that tells another process opening the database that the WAL index is in use, and the read and
// write marks): closing the file while another *sql.DB of the process still has the database open
// would let another process rebuild the WAL index under it, or checkpoint and restart the WAL over a
// read still using it.
var shmFiles = struct {
	sync.Mutex
	by map[string]*shmFile
}{by: map[string]*shmFile{}}

// shmFile is one entry of shmFiles.
type shmFile struct {
	path string
	refs int      // checkpointers using it; guarded by shmFiles
	f    *os.File // nil until opened; guarded by shmFiles, then never changed until closed
}

// acquireShm returns path's entry of shmFiles, counting one more user of it.
func acquireShm(path string) *shmFile {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	shmFiles.Lock()
	defer shmFiles.Unlock()
	e := shmFiles.by[path]
	if e == nil {
		e = &shmFile{path: path}
		shmFiles.by[path] = e
	}
	e.refs++
	return e
}

// file returns the open WAL index file, opening it if it exists; nil if it does not.
func (e *shmFile) file() *os.File {
	shmFiles.Lock()
	defer shmFiles.Unlock()
	if e.f == nil {
		e.f, _ = os.Open(e.path)
	}
	return e.f
}

// opened returns the WAL index file if it is open, without opening it.
func (e *shmFile) opened() *os.File {
	shmFiles.Lock()
	defer shmFiles.Unlock()
	return e.f
}

// release counts one user fewer, closing the file when it was the last.
func (e *shmFile) release() {
	shmFiles.Lock()
	defer shmFiles.Unlock()
	if e.refs--; e.refs > 0 {
		return
	}
	delete(shmFiles.by, e.path)
	if e.f != nil {
		e.f.Close()
		e.f = nil
	}
}

// loop polls the WAL index every checkpointPoll while the WAL changes, backing off to checkpointPollMax
// while it does not, and checkpoints when due (due).
func (cp *checkpointer) loop() {
	defer close(cp.done)
	var shm *os.File
	poll := checkpointPoll
	t := time.NewTimer(poll)
	defer t.Stop()
	var last walState
	for {
		select {
		case <-cp.stop:
			return
		case <-t.C:
		}
		if shm == nil {
			// The -shm file exists once a connection opened the database in WAL mode; the
			// checkpointer's own connection keeps it from being removed while it runs.
			if shm = cp.shm.opened(); shm == nil {
				if err := cp.db.PingContext(cp.ctx); err == nil {
					shm = cp.shm.file()
				} else if cp.ctx.Err() == nil {
					cp.failed(fmt.Errorf("connect: %w", err))
				}
			}
		}
		var st walState
		ok := false
		if shm != nil {
			st, ok = readWALState(shm)
		}
		switch {
		case !ok || st == last:
			poll = min(2*poll, checkpointPollMax)
		default:
			poll = checkpointPoll
			if cp.due(st) {
				cp.checkpoint()
			}
		}
		last = st
		t.Reset(poll)
	}
}

// due reports whether the WAL in st should be checkpointed now: when CheckpointPages frames wait to be
// copied. (Checkpointing the few frames written beside the last checkpoint as well, so that SQLite can
// start the WAL over without the writer's backstop, measured as more bytes written and more CPU:
// each such checkpoint copies the hot pages again, and syncs twice.)
func (cp *checkpointer) due(st walState) bool {
	waiting := st.frames - min(st.backfilled, st.frames)
	return waiting >= CheckpointPages
}

// checkpoint runs one PASSIVE checkpoint. A failure is logged (failed); so is the first success after
// failures. A checkpoint interrupted by Close is not a failure.
func (cp *checkpointer) checkpoint() {
	var busy, log, done int64
	err := cp.db.QueryRowContext(cp.ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done)
	if err != nil && cp.ctx.Err() != nil {
		return // closing
	}
	cp.mu.Lock()
	cp.runs++
	cp.lastError = err
	recovered := err == nil && cp.failing
	if recovered {
		cp.failing = false
	}
	cp.mu.Unlock()
	if err != nil {
		cp.failed(err)
	} else if recovered {
		cp.logger.Info("sqlite checkpoints succeed again", "database", cp.path)
	}
}

// failed logs a failure of the checkpointer, once until a checkpoint succeeds again: one that keeps
// failing (a full or failing disk, a database file it cannot write or open) is visible without a line
// per poll. The writer's own checkpoint, the backstop, bounds the WAL meanwhile.
func (cp *checkpointer) failed(err error) {
	cp.mu.Lock()
	was := cp.failing
	cp.failing = true
	cp.mu.Unlock()
	if !was {
		cp.logger.Warn("sqlite checkpoint failed; the writer's own checkpoint bounds the WAL until one succeeds",
			"database", cp.path, "error", err)
	}
}

// walState is what the WAL index says of the WAL: the frames in it and how many of them were copied
// into the database file.
type walState struct {
	frames, backfilled uint32
}

// The layout of the WAL index's start (walformat.html, 2.2.1): two copies of a 48-byte header, written
// one after the other so that a reader can tell a torn read, then the checkpoint information. Fields
// are in the machine's byte order.
const (
	walIndexHdrSize   = 48
	walIndexVersion   = 3007000
	walIndexMxFrame   = 16 // in a header copy
	walIndexIsInit    = 12
	walIndexBackfill  = 2 * walIndexHdrSize // nBackfill, first field of the checkpoint information
	walIndexReadBytes = walIndexBackfill + 4
)

// readWALState reads the WAL state from the -shm file; ok is false when the index is not initialized,
// not a version this knows, or the two header copies differ (read while SQLite wrote one).
func readWALState(shm io.ReaderAt) (walState, bool) {
	var b [walIndexReadBytes]byte
	if _, err := shm.ReadAt(b[:], 0); err != nil {
		return walState{}, false
	}
	h1, h2 := b[:walIndexHdrSize], b[walIndexHdrSize:2*walIndexHdrSize]
	if string(h1) != string(h2) || h1[walIndexIsInit] != 1 || binary.NativeEndian.Uint32(h1) != walIndexVersion {
		return walState{}, false
	}
	return walState{
		frames:     binary.NativeEndian.Uint32(h1[walIndexMxFrame:]),
		backfilled: binary.NativeEndian.Uint32(b[walIndexBackfill:]),
	}, true
}

// stats returns how many checkpoints ran and the last one's error.
func (cp *checkpointer) stats() (int, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.runs, cp.lastError
}
