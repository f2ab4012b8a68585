package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// groupFixture is a Group on a fresh SQLite database with a table of names, and the sizes of the
// transactions it ran.
type groupFixture struct {
	t     *testing.T
	ctx   context.Context
	db    *sql.DB
	g     *Group
	mu    sync.Mutex
	sizes []int
}

func newGroupFixture(t *testing.T, size int) *groupFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	db, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "group.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	for _, q := range []string{
		`CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)`,
		`CREATE TABLE parents (id INTEGER PRIMARY KEY)`,
		`CREATE TABLE children (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	f := &groupFixture{t: t, ctx: ctx, db: db, g: NewGroup(db, size)}
	f.g.observe = func(n int) {
		f.mu.Lock()
		f.sizes = append(f.sizes, n)
		f.mu.Unlock()
	}
	return f
}

// insert is a transaction function that inserts name.
func insert(name string) func(*sql.Tx) error {
	return func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO names (name) VALUES ($1)`, name)
		return err
	}
}

// names returns the names stored, in insertion order.
func (f *groupFixture) names() []string {
	f.t.Helper()
	rows, err := f.db.QueryContext(f.ctx, `SELECT name FROM names ORDER BY id`)
	if err != nil {
		f.t.Fatalf("read names: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			f.t.Fatalf("scan name: %v", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		f.t.Fatalf("read names: %v", err)
	}
	return out
}

// groupSizes returns the sizes of the transactions run so far.
func (f *groupFixture) groupSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sizes)
}

// result is what one InTx call ended with.
type result struct {
	err       error
	recovered any
	exited    bool // the goroutine ended (runtime.Goexit) inside InTx
}

// call runs InTx(ctx, fn) on its own goroutine and returns where its result will arrive.
func (f *groupFixture) call(ctx context.Context, fn func(*sql.Tx) error) <-chan result {
	out := make(chan result, 1)
	go func() {
		var (
			r        result
			returned bool
		)
		defer func() {
			r.recovered = recover()
			r.exited = !returned && r.recovered == nil
			out <- r
		}()
		r.err = f.g.InTx(ctx, fn)
		returned = true
	}()
	return out
}

// hold starts a call that inserts "hold" and then waits inside its transaction until the returned
// function is called, and returns once it waits: calls made meanwhile queue for the next transaction.
func (f *groupFixture) hold() (release func() result) {
	started, proceed := make(chan struct{}), make(chan struct{})
	done := f.call(f.ctx, func(tx *sql.Tx) error {
		close(started)
		<-proceed
		return insert("hold")(tx)
	})
	<-started
	return func() result {
		close(proceed)
		return wait(f.t, done)
	}
}

// queue starts a call and returns once it is queued behind the calls queued before it.
func (f *groupFixture) queue(ctx context.Context, fn func(*sql.Tx) error) <-chan result {
	f.t.Helper()
	f.g.mu.Lock()
	n := len(f.g.queue)
	f.g.mu.Unlock()
	done := f.call(ctx, fn)
	f.waitQueued(n + 1)
	return done
}

// waitQueued waits until n calls are queued.
func (f *groupFixture) waitQueued(n int) {
	f.t.Helper()
	for {
		f.g.mu.Lock()
		got := len(f.g.queue)
		f.g.mu.Unlock()
		if got == n {
			return
		}
		if f.ctx.Err() != nil {
			f.t.Fatalf("queued calls = %d, want %d (gave up waiting)", got, n)
		}
		runtime.Gosched()
	}
}

func wait(t *testing.T, done <-chan result) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("InTx did not return (hang guard)")
		return result{}
	}
}

func TestGroupFailedFunctionIsRolledBackAlone(t *testing.T) {
	f := newGroupFixture(t, 0)
	errB := errors.New("business rule b")
	release := f.hold()
	a := f.queue(f.ctx, insert("a"))
	b := f.queue(f.ctx, func(tx *sql.Tx) error {
		if err := insert("b")(tx); err != nil {
			return err
		}
		return errB
	})
	c := f.queue(f.ctx, func(tx *sql.Tx) error {
		if err := insert("c")(tx); err != nil {
			return err
		}
		return insert("a")(tx) // a UNIQUE violation: an SQL error
	})
	d := f.queue(f.ctx, insert("d"))
	if r := release(); r.err != nil {
		t.Fatalf("held call: %v", r.err)
	}
	if r := wait(t, a); r.err != nil {
		t.Errorf("a: InTx = %v, want nil", r.err)
	}
	if r := wait(t, b); r.err != errB {
		t.Errorf("b: InTx = %v, want %v", r.err, errB)
	}
	if r := wait(t, c); r.err == nil || !strings.Contains(r.err.Error(), "UNIQUE constraint failed: names.name") {
		t.Errorf("c: InTx = %v, want the UNIQUE violation", r.err)
	}
	if r := wait(t, d); r.err != nil {
		t.Errorf("d: InTx = %v, want nil", r.err)
	}
	if diff := cmp.Diff([]string{"hold", "a", "d"}, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{1, 4}, f.groupSizes()); diff != "" {
		t.Errorf("group sizes (-want +got):\n%s", diff)
	}
}

// A function that runs before anything of its transaction is kept runs without a savepoint: when it
// fails (an error, an SQL error, a panic), its transaction, holding its writes alone, is rolled back and
// the functions after it run in a new one, which sees nothing of it.
func TestGroupFailedFirstFunctionRollsBackItsTransaction(t *testing.T) {
	f := newGroupFixture(t, 0)
	errA, errE := errors.New("business rule a"), errors.New("business rule e")
	release := f.hold()
	a := f.queue(f.ctx, func(tx *sql.Tx) error {
		if err := insert("a")(tx); err != nil {
			return err
		}
		return errA
	})
	b := f.queue(f.ctx, func(tx *sql.Tx) error {
		if err := insert("b")(tx); err != nil {
			return err
		}
		return insert("hold")(tx) // a UNIQUE violation: an SQL error
	})
	c := f.queue(f.ctx, func(tx *sql.Tx) error {
		if err := insert("c")(tx); err != nil {
			return err
		}
		panic("boom")
	})
	d := f.queue(f.ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM names`).Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("d sees %d names, want 1 (hold)", n)
		}
		return insert("d")(tx)
	})
	e := f.queue(f.ctx, func(tx *sql.Tx) error {
		if err := insert("e")(tx); err != nil {
			return err
		}
		return errE
	})
	if r := release(); r.err != nil {
		t.Fatalf("held call: %v", r.err)
	}
	if r := wait(t, a); r.err != errA {
		t.Errorf("a: InTx = %v, want %v", r.err, errA)
	}
	if r := wait(t, b); r.err == nil || !strings.Contains(r.err.Error(), "UNIQUE constraint failed: names.name") {
		t.Errorf("b: InTx = %v, want the UNIQUE violation", r.err)
	}
	if r := wait(t, c); r.err != nil || r.recovered == nil {
		t.Errorf("c: InTx = %v, panic %v; want a panic", r.err, r.recovered)
	} else if p, ok := r.recovered.(*PanicError); !ok || p.Value != "boom" {
		t.Errorf("c: recovered %#v, want a *PanicError of \"boom\"", r.recovered)
	}
	if r := wait(t, d); r.err != nil {
		t.Errorf("d: InTx = %v, want nil", r.err)
	}
	if r := wait(t, e); r.err != errE {
		t.Errorf("e: InTx = %v, want %v", r.err, errE)
	}
	if diff := cmp.Diff([]string{"hold", "d"}, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	// hold alone; then a, b and c each end their transaction; d and e share the last one.
	if diff := cmp.Diff([]int{1, 5, 4, 3, 2}, f.groupSizes()); diff != "" {
		t.Errorf("group sizes (-want +got):\n%s", diff)
	}
	if err := InTx(f.ctx, f.db, insert("plain")); err != nil {
		t.Fatalf("database.InTx after the failures: %v", err)
	}
	if diff := cmp.Diff([]string{"hold", "d", "plain"}, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

func TestGroupFailedCommitFailsEveryKeptFunction(t *testing.T) {
	f := newGroupFixture(t, 0)
	errC := errors.New("business rule c")
	release := f.hold()
	a := f.queue(f.ctx, insert("a"))
	b := f.queue(f.ctx, func(tx *sql.Tx) error {
		// A deferred foreign key: the statement succeeds, the COMMIT fails.
		_, err := tx.Exec(`INSERT INTO children (parent) VALUES (42)`)
		return err
	})
	c := f.queue(f.ctx, func(*sql.Tx) error { return errC })
	if r := release(); r.err != nil {
		t.Fatalf("held call: %v", r.err)
	}
	ra, rb, rc := wait(t, a), wait(t, b), wait(t, c)
	if ra.err == nil || !strings.Contains(ra.err.Error(), "commit transaction: ") || !strings.Contains(ra.err.Error(), "FOREIGN KEY constraint failed") {
		t.Errorf("a: InTx = %v, want the failed commit", ra.err)
	}
	if rb.err != ra.err {
		t.Errorf("b: InTx = %v, want a's error %v", rb.err, ra.err)
	}
	if rc.err != errC {
		t.Errorf("c: InTx = %v, want its own error %v", rc.err, errC)
	}
	if diff := cmp.Diff([]string{"hold"}, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	// The writer connection is not left in a transaction.
	if err := f.g.InTx(f.ctx, insert("after")); err != nil {
		t.Fatalf("InTx after the failed commit: %v", err)
	}
	if err := InTx(f.ctx, f.db, insert("plain")); err != nil {
		t.Fatalf("database.InTx after the failed commit: %v", err)
	}
	if diff := cmp.Diff([]string{"hold", "after", "plain"}, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

func TestGroupCancelledWaiterIsSkipped(t *testing.T) {
	f := newGroupFixture(t, 0)
	ran := make(chan string, 4)
	mark := func(name string) func(*sql.Tx) error {
		return func(tx *sql.Tx) error {
			ran <- name
			return insert(name)(tx)
		}
	}

	// A context that ended before the call.
	ended, cancel := context.WithCancel(f.ctx)
	cancel()
	if err := f.g.InTx(ended, mark("early")); err != context.Canceled {
		t.Errorf("InTx(ended context) = %v, want %v", err, context.Canceled)
	}

	// A waiter that gives up while queued returns at once, before the transaction ahead of it ends.
	release := f.hold()
	waiterCtx, cancelWaiter := context.WithCancel(f.ctx)
	waiter := f.queue(waiterCtx, mark("waiter"))
	cancelWaiter()
	if r := wait(t, waiter); r.err != context.Canceled {
		t.Errorf("cancelled waiter: InTx = %v, want %v", r.err, context.Canceled)
	}

	// A waiter taken into a transaction whose context ends before its turn is skipped.
	skippedCtx, cancelSkipped := context.WithCancel(f.ctx)
	first := f.queue(f.ctx, func(tx *sql.Tx) error {
		cancelSkipped()
		return mark("first")(tx)
	})
	skipped := f.queue(skippedCtx, mark("skipped"))
	last := f.queue(f.ctx, mark("last"))
	if r := release(); r.err != nil {
		t.Fatalf("held call: %v", r.err)
	}
	if r := wait(t, first); r.err != nil {
		t.Errorf("first: InTx = %v, want nil", r.err)
	}
	if r := wait(t, skipped); r.err != context.Canceled {
		t.Errorf("skipped: InTx = %v, want %v", r.err, context.Canceled)
	}
	if r := wait(t, last); r.err != nil {
		t.Errorf("last: InTx = %v, want nil", r.err)
	}
	close(ran)
	var got []string
	for n := range ran {
		got = append(got, n)
	}
	if diff := cmp.Diff([]string{"first", "last"}, got); diff != "" {
		t.Errorf("functions run (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"hold", "first", "last"}, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

func TestGroupLeaderGivingUpPassesTheLead(t *testing.T) {
	f := newGroupFixture(t, 0)
	// A statement outside the group holds the writer connection.
	busy, err := f.db.Conn(f.ctx)
	if err != nil {
		t.Fatalf("Conn: %v", err)
	}
	leaderCtx, cancelLeader := context.WithCancel(f.ctx)
	leader := f.queue(leaderCtx, insert("leader"))
	next := f.queue(f.ctx, insert("next"))
	cancelLeader()
	if r := wait(t, leader); r.err != context.Canceled {
		t.Errorf("leader: InTx = %v, want %v", r.err, context.Canceled)
	}
	if err := busy.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if r := wait(t, next); r.err != nil {
		t.Errorf("next: InTx = %v, want nil", r.err)
	}
	if diff := cmp.Diff([]string{"next"}, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

func TestGroupStatementAfterCancelFailsOnlyItsFunction(t *testing.T) {
	f := newGroupFixture(t, 0)
	release := f.hold()
	ctx, cancel := context.WithCancel(f.ctx)
	cancelled := f.queue(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO names (name) VALUES ('x')`); err != nil {
			return err
		}
		cancel()
		_, err := tx.ExecContext(ctx, `INSERT INTO names (name) VALUES ('y')`)
		return err
	})
	after := f.queue(f.ctx, insert("after"))
	if r := release(); r.err != nil {
		t.Fatalf("held call: %v", r.err)
	}
	if r := wait(t, cancelled); !errors.Is(r.err, context.Canceled) {
		t.Errorf("cancelled: InTx = %v, want %v", r.err, context.Canceled)
	}
	if r := wait(t, after); r.err != nil {
		t.Errorf("after: InTx = %v, want nil", r.err)
	}
	if diff := cmp.Diff([]string{"hold", "after"}, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

func TestGroupPanicIsTheCallersAlone(t *testing.T) {
	f := newGroupFixture(t, 0)
	release := f.hold()
	a := f.queue(f.ctx, insert("a"))
	b := f.queue(f.ctx, func(tx *sql.Tx) error {
		if err := insert("b")(tx); err != nil {
			return err
		}
		panic("boom")
	})
	c := f.queue(f.ctx, insert("c"))
	if r := release(); r.err != nil || r.recovered != nil {
		t.Fatalf("held call: %v, panic %v", r.err, r.recovered)
	}
	if r := wait(t, a); r.err != nil || r.recovered != nil {
		t.Errorf("a: InTx = %v, panic %v; want nil", r.err, r.recovered)
	}
	rb := wait(t, b)
	p, ok := rb.recovered.(*PanicError)
	if !ok || p.Value != "boom" || !strings.Contains(string(p.Stack), "TestGroupPanicIsTheCallersAlone") {
		t.Errorf("b: recovered %#v, want a *PanicError of \"boom\" with the function's stack", rb.recovered)
	}
	if r := wait(t, c); r.err != nil || r.recovered != nil {
		t.Errorf("c: InTx = %v, panic %v; want nil", r.err, r.recovered)
	}
	if diff := cmp.Diff([]string{"hold", "a", "c"}, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}

	// The leader's own function panicking: the panic reaches it, the connection is clean.
	r := wait(t, f.call(f.ctx, func(tx *sql.Tx) error {
		if err := insert("own")(tx); err != nil {
			return err
		}
		panic("own boom")
	}))
	if p, ok := r.recovered.(*PanicError); !ok || p.Value != "own boom" {
		t.Errorf("own panic: recovered %#v, want a *PanicError of \"own boom\"", r.recovered)
	}
	if err := InTx(f.ctx, f.db, insert("plain")); err != nil {
		t.Fatalf("database.InTx after the panic: %v", err)
	}
	if diff := cmp.Diff([]string{"hold", "a", "c", "plain"}, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

func TestGroupGoexitAbortsTheGroup(t *testing.T) {
	f := newGroupFixture(t, 0)
	release := f.hold()
	a := f.queue(f.ctx, insert("a"))
	b := f.queue(f.ctx, func(tx *sql.Tx) error {
		if err := insert("b")(tx); err != nil {
			return err
		}
		runtime.Goexit()
		return nil
	})
	c := f.queue(f.ctx, insert("c"))
	// The held call's goroutine leads the next transaction too (a, b, c) and ends with b's Goexit.
	if r := release(); !r.exited {
		t.Errorf("held call: %+v, want its goroutine ended", r)
	}
	if r := wait(t, b); !r.exited {
		t.Errorf("b: %+v, want its goroutine ended", r)
	}
	if r := wait(t, a); r.err != ErrGroupAborted {
		t.Errorf("a: InTx = %v, want %v", r.err, ErrGroupAborted)
	}
	if r := wait(t, c); r.err != ErrGroupAborted {
		t.Errorf("c: InTx = %v, want %v", r.err, ErrGroupAborted)
	}
	if diff := cmp.Diff([]string{"hold"}, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if err := f.g.InTx(f.ctx, insert("after")); err != nil {
		t.Fatalf("InTx after the Goexit: %v", err)
	}
}

func TestGroupRunsInQueueOrder(t *testing.T) {
	f := newGroupFixture(t, 0)
	release := f.hold()
	want := []string{"hold"}
	var done []<-chan result
	for i := range 6 {
		name := string(rune('a' + i))
		want = append(want, name)
		n := len(want) - 1 // rows before this function's
		done = append(done, f.queue(f.ctx, func(tx *sql.Tx) error {
			var got int
			if err := tx.QueryRow(`SELECT count(*) FROM names`).Scan(&got); err != nil {
				return err
			}
			if got != n {
				return errors.New("function does not see the writes of the functions before it")
			}
			return insert(name)(tx)
		}))
	}
	if r := release(); r.err != nil {
		t.Fatalf("held call: %v", r.err)
	}
	for i, d := range done {
		if r := wait(t, d); r.err != nil {
			t.Errorf("call %d: InTx = %v, want nil", i, r.err)
		}
	}
	if diff := cmp.Diff(want, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{1, 6}, f.groupSizes()); diff != "" {
		t.Errorf("group sizes (-want +got):\n%s", diff)
	}
}

func TestGroupSizeIsBounded(t *testing.T) {
	f := newGroupFixture(t, 3)
	release := f.hold()
	var done []<-chan result
	for i := range 7 {
		done = append(done, f.queue(f.ctx, insert(string(rune('a'+i)))))
	}
	if r := release(); r.err != nil {
		t.Fatalf("held call: %v", r.err)
	}
	for i, d := range done {
		if r := wait(t, d); r.err != nil {
			t.Errorf("call %d: InTx = %v, want nil", i, r.err)
		}
	}
	if diff := cmp.Diff([]string{"hold", "a", "b", "c", "d", "e", "f", "g"}, f.names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{1, 3, 3, 1}, f.groupSizes()); diff != "" {
		t.Errorf("group sizes (-want +got):\n%s", diff)
	}
}

func TestGroupCallAloneRunsAtOnce(t *testing.T) {
	f := newGroupFixture(t, 0)
	for _, name := range []string{"a", "b"} {
		if err := f.g.InTx(f.ctx, insert(name)); err != nil {
			t.Fatalf("InTx(%s): %v", name, err)
		}
	}
	if diff := cmp.Diff([]int{1, 1}, f.groupSizes()); diff != "" {
		t.Errorf("group sizes (-want +got):\n%s", diff)
	}
}

func TestGroupOnClosedDatabase(t *testing.T) {
	f := newGroupFixture(t, 0)
	if err := f.db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// As InTx: database/sql's own error, wrapped.
	err := f.g.InTx(f.ctx, insert("a"))
	if err == nil || err.Error() != "begin transaction: sql: database is closed" {
		t.Errorf("InTx on a closed database = %v, want begin transaction: sql: database is closed", err)
	}
}

func TestShieldedConnIgnoresCancellation(t *testing.T) {
	f := newGroupFixture(t, 0)
	conn, err := f.db.Conn(f.ctx)
	if err != nil {
		t.Fatalf("Conn: %v", err)
	}
	defer conn.Close()
	ended, cancel := context.WithCancel(f.ctx)
	cancel()
	for _, shield := range []bool{false, true} {
		err := conn.Raw(func(dc any) error {
			c := dc.(*cachedConn)
			c.shield = shield
			defer func() { c.shield = false }()
			_, err := c.ExecContext(ended, `INSERT INTO names (name) VALUES ($1)`, []driver.NamedValue{{Ordinal: 1, Value: "shield"}})
			return err
		})
		if shield && err != nil {
			t.Errorf("shielded ExecContext(ended context) = %v, want nil", err)
		}
		if !shield && !errors.Is(err, context.Canceled) {
			t.Errorf("ExecContext(ended context) = %v, want %v", err, context.Canceled)
		}
	}
}

func TestGroupStatsCountTransactionsFunctionsAndHeldTime(t *testing.T) {
	f := newGroupFixture(t, 0)
	if got := f.g.Stats(); got != (GroupStats{}) {
		t.Fatalf("Stats() of a new group = %+v, want zero", got)
	}
	for _, name := range []string{"a", "b", "a"} { // the second "a" fails on the unique name
		_ = f.g.InTx(f.ctx, insert(name))
	}
	got := f.g.Stats()
	if got.Transactions != 3 || got.Functions != 3 {
		t.Errorf("Stats() = %d transactions, %d functions, want 3 and 3", got.Transactions, got.Functions)
	}
	if got.Held <= 0 {
		t.Errorf("Stats().Held = %v, want > 0", got.Held)
	}
	if runtime.GOOS == "linux" && (got.CPU <= 0 || got.CPU > got.Held) {
		t.Errorf("Stats().CPU = %v, want > 0 and at most Held (%v)", got.CPU, got.Held)
	}
}
