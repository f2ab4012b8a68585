package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultGroupSize is how many transaction functions a Group runs in one transaction at most when
// NewGroup is given no size.
const DefaultGroupSize = 32

// groupLeadRounds bounds the transactions one leader runs in a row while callers keep queueing: after
// that it hands the lead to the oldest waiter and returns to its own caller, whose answer would
// otherwise wait for other callers' work without end. Staying on for a few rounds saves a goroutine
// hand-off per transaction while the writer is busy.
const groupLeadRounds = 4

// ErrGroupAborted is what the other callers of a group get when a transaction function of the group
// ended its goroutine with runtime.Goexit (t.FailNow in a test): the whole transaction was rolled
// back, and nothing of theirs was written.
var ErrGroupAborted = errors.New("group transaction rolled back: a transaction function of the group called runtime.Goexit")

// PanicError is what Group.InTx panics with when the caller's transaction function panicked: the
// function may have run on another caller's goroutine, so the value travels with the stack where the
// panic happened.
type PanicError struct {
	// Value is what the function panicked with.
	Value any
	// Stack is the stack of the goroutine that ran the function, at the panic.
	Stack []byte
}

// Error implements error, so that a recovering handler that logs errors shows the value and the stack.
func (p *PanicError) Error() string {
	return fmt.Sprintf("panic in a group transaction function: %v\n\n%s", p.Value, p.Stack)
}

// Group runs the transaction functions of concurrent callers in shared transactions on one database
// (group commit): the writer of a database opened with OpenSQLite, where transactions run one after
// the other on a single connection and each small one pays its own BEGIN and COMMIT (the WAL frames,
// their checksums, a checkpoint now and then) and a hand-off of the connection.
//
// A caller of InTx queues its function. When no transaction of the group is running, the caller
// becomes the leader: it takes the writer connection, then every queued function (up to the group's
// size, oldest first), and runs them in one transaction, each inside its own savepoint, except a
// function that runs before any other function's writes were kept in the transaction (the first,
// usually): that one runs without a savepoint, which on SQLite copies every page the function changes
// to a sub-journal, and when it fails the whole transaction, which then holds its writes alone, is
// rolled back and the functions after it run in a new one. A function that returns an error, or
// panics, is rolled back (to its savepoint, or with its transaction), so it leaves no write behind and
// the others' writes stay; a function that returns nil keeps its writes. The leader then commits once
// and answers every caller: nil only after the commit succeeded; its function's own error to a caller
// whose function failed; the commit's error to every caller whose function had succeeded when the
// commit fails. While callers keep queueing the leader runs a few more transactions, then hands the
// lead to the oldest waiter. No caller ever waits for a group to fill: with nobody else queued, the
// leader runs its function alone at once.
//
// The result is what running the functions one after the other in separate transactions, in the
// order they were queued, would give, except that none of them is visible to other connections, nor
// durable, before the last of the group is done. In particular a function sees the writes of the
// functions before it in its group, and the rows it inserts (an event log's sequence numbers
// included) follow theirs. Post-commit effects (a nudge of subscribers, a cache of what was written)
// belong after InTx returned nil, in the caller: that happens only after the commit, and only for a
// function whose writes were kept.
//
// Contexts: the transaction belongs to no caller (it runs under context.Background), so one caller's
// cancellation never ends the others'. A caller whose context ends while its call waits in the queue
// gets ctx.Err() at once; one whose call a leader already took gets it when the leader comes to the
// call; either way its function is never run. A leader whose context ends while it waits for the
// writer connection passes the lead to the oldest waiter. A function's statements run under its caller's
// context in this sense: a statement started after the context ended fails with ctx.Err() (so the
// function fails and is rolled back alone); a statement already running finishes, because on SQLite
// interrupting a write statement rolls back the whole transaction, the others' work with it. Once its
// function started, a caller waits for the commit (its own statements fail fast by then).
//
// A panic in a function is its caller's alone: the function is rolled back as a failing one is, the
// others are committed, and the caller's InTx panics with a *PanicError that carries the value and the
// stack. A function must not call runtime.Goexit (t.FailNow): it may run on another caller's
// goroutine, which would end instead of its own. If one does, the whole transaction is rolled back,
// the other callers of the group get ErrGroupAborted, the function's own caller ends its goroutine as
// InTx does, and the goroutine that ran the function ends with it.
//
// The rules of InTx hold for each function: it must use its *sql.Tx only, and it may run again (a
// retry) only from its caller. It must not call InTx of the same group: it would wait for itself.
// A Group is safe for concurrent use; the zero value is not usable (NewGroup).
type Group struct {
	db      *sql.DB
	size    int
	observe func(n int) // tests: called with the number of functions of each transaction run

	mu      sync.Mutex
	queue   []*groupCall
	leading bool // a leader is running or about to: new callers only queue

	// What Stats reports.
	transactions, functions, held, cpu atomic.Int64
}

// GroupStats is what a Group ran since NewGroup (Stats).
type GroupStats struct {
	// Transactions is how many transactions the group began.
	Transactions int64
	// Functions is how many transaction functions ran in them (those whose caller gave up before
	// their turn are not counted).
	Functions int64
	// Held is the wall time the group's leaders held the writer connection, from taking it to giving
	// it back: the time the database's one writer was busy with the group's work, which is the
	// serial part of every write.
	Held time.Duration
	// CPU is the CPU time the leaders' threads used while they held the writer (Linux only; 0
	// elsewhere): Held without the waits for a core on a busy machine.
	CPU time.Duration
}

// Stats returns what g ran since NewGroup. It is safe to call at any time; the counts of a
// transaction still running are not in it yet.
func (g *Group) Stats() GroupStats {
	return GroupStats{Transactions: g.transactions.Load(), Functions: g.functions.Load(), Held: time.Duration(g.held.Load()),
		CPU: time.Duration(g.cpu.Load())}
}

// NewGroup returns a Group that runs at most size functions per transaction on db (DefaultGroupSize
// when size < 1). db should be a database opened with OpenSQLite: on it, statements inside a group
// transaction are never interrupted by a caller's context (see Group); on another database they are
// as the driver does it, and a write interrupted by its context may fail every function of the group.
func NewGroup(db *sql.DB, size int) *Group {
	if size < 1 {
		size = DefaultGroupSize
	}
	return &Group{db: db, size: size}
}

// The states of a groupCall. A pending call is queued; the waiter may cancel it, or a leader take it
// into a transaction or promote it to lead.
const (
	callPending int32 = iota
	callCancelled
	callTaken
	callLead
)

// groupCall is one InTx call.
type groupCall struct {
	ctx   context.Context
	fn    func(*sql.Tx) error
	state atomic.Int32
	// wake gets one signal when the call is promoted to lead, and one when it is answered.
	wake chan struct{}

	// The answer, written by the leader before the answer's signal.
	err      error
	panicked *PanicError
	exited   bool // fn called runtime.Goexit
	answered bool
}

// InTx runs fn in a transaction shared with other callers' functions, and returns when that
// transaction committed (nil) or fn failed (its error, as is) or the commit failed (Unavailable or
// Internal, as Classify says). See Group for what is shared and what is not.
func (g *Group) InTx(ctx context.Context, fn func(*sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &groupCall{ctx: ctx, fn: fn, wake: make(chan struct{}, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	lead := !g.leading
	if lead {
		g.leading = true
		c.state.Store(callLead)
	}
	g.mu.Unlock()
	if !lead {
		select {
		case <-c.wake:
		case <-ctx.Done():
			if c.state.CompareAndSwap(callPending, callCancelled) {
				return ctx.Err()
			}
			<-c.wake // taken or promoted: the signal is on its way
		}
	}
	if c.state.Load() == callLead {
		g.lead(c)
	}
	switch {
	case c.exited:
		runtime.Goexit()
	case c.panicked != nil:
		panic(c.panicked)
	}
	return c.err
}

// lead runs transactions for the queued calls, own's first, until own is answered and either nobody
// queues any more or groupLeadRounds transactions ran; then it passes the lead on.
func (g *Group) lead(own *groupCall) {
	var batch []*groupCall
	done := false
	defer func() {
		if !done {
			// Only a transaction function's runtime.Goexit gets here (panics are recovered in
			// runOne): the transaction was rolled back by runTx's deferred rollback.
			for _, c := range batch {
				if !c.answered {
					g.answer(c, ErrGroupAborted)
				}
			}
			g.handOff()
		}
	}()
	for round := 1; ; round++ {
		// Waiting for the writer (which a statement outside the group may hold) under the leader's own
		// context: a leader whose caller gives up passes the lead on instead of keeping it waiting.
		conn, err := g.db.Conn(own.ctx)
		if err != nil && own.ctx.Err() != nil {
			g.mu.Lock()
			if !own.answered {
				g.queue = slices.DeleteFunc(g.queue, func(c *groupCall) bool { return c == own })
				own.err, own.answered = own.ctx.Err(), true
			}
			done = true
			g.handOffLocked()
			g.mu.Unlock()
			return
		}
		batch = g.take(own, batch[:0])
		if err != nil {
			g.failBegin(batch, err)
		} else {
			g.run(conn, batch)
		}
		if !own.answered {
			continue // own was taken in the first round: not reached
		}
		g.mu.Lock()
		more := len(g.queue) > 0
		if !more || round >= groupLeadRounds {
			done = true
			g.handOffLocked()
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
	}
}

// take moves up to g.size calls from the head of the queue into batch: own (the leader's call, in
// state callLead) and the pending ones; calls whose waiter gave up are dropped.
func (g *Group) take(own *groupCall, batch []*groupCall) []*groupCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.queue {
		if len(batch) == g.size {
			break
		}
		n++
		if (c == own && c.state.CompareAndSwap(callLead, callTaken)) || c.state.CompareAndSwap(callPending, callTaken) {
			batch = append(batch, c)
		}
	}
	rest := copy(g.queue, g.queue[n:])
	clear(g.queue[rest:])
	g.queue = g.queue[:rest]
	return batch
}

// handOff passes the lead to the oldest waiting call, or ends it when there is none.
func (g *Group) handOff() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handOffLocked()
}

func (g *Group) handOffLocked() {
	for len(g.queue) > 0 {
		c := g.queue[0]
		if c.state.CompareAndSwap(callPending, callLead) {
			c.wake <- struct{}{}
			return
		}
		// Cancelled by its waiter: drop it.
		g.queue[0] = nil
		g.queue = g.queue[1:]
	}
	g.queue = nil
	g.leading = false
}

// answer records err as c's result, unless c already has one (its function's error, panic or Goexit),
// and wakes its waiter. The leader's own call gets the signal too, into its channel's buffer, where
// nobody reads it: the leader's goroutine is the one answering.
func (g *Group) answer(c *groupCall, err error) {
	if c.answered {
		return
	}
	if c.err == nil && c.panicked == nil && !c.exited {
		c.err = err
	}
	c.answered = true
	c.wake <- struct{}{}
}

// The statements around each function. One name serves every function: each savepoint is released
// before the next one opens.
const (
	savepointSQL = "SAVEPOINT lastmile_group"
	releaseSQL   = "RELEASE lastmile_group"
	rollbackSQL  = "ROLLBACK TO lastmile_group"
)

// run runs batch in transactions on conn and answers every call of it, then returns conn to the pool.
// Normally that is one transaction; when the transaction breaks under a function (SQLite rolled it
// back by itself, after an I/O error say, and the savepoint is gone), the functions that ran in it
// lose their writes and get the error, and those not started yet run in a new transaction, as they
// do after a function that ran without a savepoint failed and its transaction was rolled back.
func (g *Group) run(conn *sql.Conn, batch []*groupCall) {
	// The goroutine stays on its thread while it holds the writer, so that the thread's CPU time is
	// the group's.
	runtime.LockOSThread()
	start, cpu0 := time.Now(), threadCPU()
	defer func() {
		g.cpu.Add(int64(threadCPU() - cpu0))
		g.held.Add(int64(time.Since(start)))
		runtime.UnlockOSThread()
	}()
	defer conn.Close()
	setShield(conn, true)
	defer setShield(conn, false)
	for rest := batch; len(rest) > 0; {
		rest = g.runTx(conn, rest)
	}
}

// runTx runs batch in one transaction on conn and answers the calls it ran or skipped; it returns the
// calls it did not start because the transaction broke.
func (g *Group) runTx(conn *sql.Conn, batch []*groupCall) []*groupCall {
	if g.observe != nil {
		g.observe(len(batch))
	}
	g.transactions.Add(1)
	ctx := context.Background()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		g.failBegin(batch, err)
		return nil
	}
	finished := false
	defer func() {
		if !finished { // runtime.Goexit in a function: lead's deferred call answers everyone
			_ = tx.Rollback()
		}
	}()
	kept := make([]*groupCall, 0, len(batch))
	for i, c := range batch {
		if err := c.ctx.Err(); err != nil {
			g.answer(c, err)
			continue
		}
		// Nothing of the transaction is kept before c: c needs no savepoint of its own, the
		// transaction is its savepoint.
		alone := len(kept) == 0
		if !alone {
			if _, err := tx.ExecContext(ctx, savepointSQL); err != nil {
				// Nothing of c ran; it and the rest fail too rather than try again on a
				// connection that may fail the same way each time.
				finished = true
				g.broken(tx, append(kept, batch[i:]...), fmt.Errorf("open savepoint: %w", err))
				return nil
			}
		}
		g.functions.Add(1)
		fnErr := runOne(tx, c) // does not return after a runtime.Goexit: lead's deferred call answers
		if alone {
			if fnErr == nil && c.panicked == nil {
				kept = append(kept, c)
				continue
			}
			// c's writes are all the transaction holds: roll it back, and run the rest in a new
			// one. A rollback that fails (the transaction already ended by SQLite after an I/O
			// error) leaves nothing of c either.
			finished = true
			_ = tx.Rollback()
			g.answer(c, fnErr)
			return batch[i+1:]
		}
		if fnErr == nil && c.panicked == nil {
			if _, err := tx.ExecContext(ctx, releaseSQL); err != nil {
				finished = true
				g.broken(tx, append(kept, c), fmt.Errorf("release savepoint: %w", err))
				return batch[i+1:]
			}
			kept = append(kept, c)
			continue
		}
		_, rbErr := tx.ExecContext(ctx, rollbackSQL)
		if rbErr == nil {
			_, rbErr = tx.ExecContext(ctx, releaseSQL)
		}
		if rbErr != nil {
			finished = true
			g.answer(c, fnErr)
			g.broken(tx, kept, fmt.Errorf("roll back to savepoint: %w", rbErr))
			return batch[i+1:]
		}
		g.answer(c, fnErr)
	}
	finished = true
	if err := tx.Commit(); err != nil {
		err = Classify(fmt.Errorf("commit transaction: %w", err))
		for _, c := range kept {
			g.answer(c, err)
		}
		return nil
	}
	for _, c := range kept {
		g.answer(c, nil)
	}
	return nil
}

// failBegin answers every call of batch with err, why their transaction could not begin.
func (g *Group) failBegin(batch []*groupCall, err error) {
	err = Classify(fmt.Errorf("begin transaction: %w", err))
	for _, c := range batch {
		g.answer(c, err)
	}
}

// broken ends a transaction that can no longer be trusted and fails the calls whose writes it held.
func (g *Group) broken(tx *sql.Tx, lost []*groupCall, cause error) {
	err := Classify(fmt.Errorf("group transaction lost: %w", cause))
	if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
		err = errors.Join(err, fmt.Errorf("roll back: %w", rbErr))
	}
	for _, c := range lost {
		g.answer(c, err)
	}
}

// runOne runs c's function on tx and returns its error; a panic is recovered into c.panicked, and a
// runtime.Goexit marks c.exited before it goes on ending the goroutine.
func runOne(tx *sql.Tx, c *groupCall) (err error) {
	normal := false
	defer func() {
		if normal {
			return
		}
		if v := recover(); v != nil {
			c.panicked = &PanicError{Value: v, Stack: debug.Stack()}
			return
		}
		c.exited = true
	}()
	err = c.fn(tx)
	normal = true
	return err
}

// setShield makes conn's statements ignore their contexts' cancellation (on a connection of
// OpenSQLite's), or undoes it; on another driver's connection it does nothing.
func setShield(conn *sql.Conn, on bool) {
	_ = conn.Raw(func(dc any) error {
		if c, ok := dc.(*cachedConn); ok {
			c.shield = on
		}
		return nil
	})
}
