package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/eventlog"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// MaxLimit bounds every read that takes a limit: one more than the largest snapshot a session sends, so
// that a caller learns whether more follow. A larger limit is lowered to it.
const MaxLimit = dispatch.MaxSnapshotTasks + 1

// taskColumns are what scanTask reads: the store's own version and due time, then the doc.
const taskColumns = `version, due_time, doc`

func (s *Store) scanTask(row scanner) (dispatch.Task, error) {
	var (
		version int64
		due     time.Time
		doc     []byte
	)
	if err := row.Scan(&version, database.ScanTime(&due), &doc); err != nil {
		return dispatch.Task{}, err
	}
	return s.taskOf(version, due, doc)
}

// taskOf is the task stored as taskColumns: its document, with the version and due time kept in columns.
func (s *Store) taskOf(version int64, due time.Time, doc []byte) (dispatch.Task, error) {
	t, err := s.decodeTask(doc)
	if err != nil {
		return dispatch.Task{}, err
	}
	t.Version, t.DueTime = version, due
	return t, nil
}

func taskNotFound(id string) error {
	return apperr.Errorf(apperr.NotFound, "task %s not found", id)
}

// offerCourier is the courier of t's open offer, "" when it has none.
func offerCourier(t *dispatch.Task) string {
	if o := t.CurrentOffer(); o != nil {
		return o.CourierID
	}
	return ""
}

// CreateTask implements dispatch.Store.
func (s *Store) CreateTask(ctx context.Context, t dispatch.Task) (dispatch.Task, bool, error) {
	return s.CreateTaskCapped(ctx, t, math.MaxInt64)
}

// countOpenTask adds one to the open tasks of customer $1 (customer_open_tasks, whose trigger takes one
// off when a task finishes), under the cap $2: one more than $2 fails the table's check
// (customer_open_tasks_cap). The row stays locked to the transaction's end, so that concurrent creates
// for one customer count one after the other, each from the count the other left.
const countOpenTask = `
	INSERT INTO customer_open_tasks (customer_id, open_tasks, max_open) VALUES ($1, 1, $2)
	ON CONFLICT (customer_id) DO UPDATE SET open_tasks = customer_open_tasks.open_tasks + 1, max_open = excluded.max_open`

// capError returns dispatch.ErrTooManyOpenTasks when err is the failed check of countOpenTask, and err
// mapped as MapError does otherwise.
func (s *Store) capError(err error, what string) error {
	var pgErr *pgconn.PgError
	var se *sqlite.Error
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23514" && pgErr.ConstraintName == "customer_open_tasks_cap",
		errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_CHECK && strings.Contains(se.Error(), "customer_open_tasks_cap"):
		return fmt.Errorf("%s: %w", what, dispatch.ErrTooManyOpenTasks)
	}
	return s.e.MapError(err, what)
}

// CreateTaskCapped implements dispatch.Store.
func (s *Store) CreateTaskCapped(ctx context.Context, t dispatch.Task, maxOpen int64) (dispatch.Task, bool, error) {
	if t.ID == "" {
		return dispatch.Task{}, false, apperr.Errorf(apperr.Invalid, "task without an id")
	}
	t = t.Stored()
	t.Version = 1
	doc, err := encodeTask(&t)
	if err != nil {
		return dispatch.Task{}, false, err
	}
	if err := s.storable(doc, "task "+t.ID); err != nil {
		return dispatch.Task{}, false, err
	}
	if s.e.Dialect == database.Postgres && len(t.Offers) == 0 {
		return s.createPostgres(ctx, t, doc, maxOpen)
	}
	var (
		out     dispatch.Task
		created bool
	)
	err = s.inTxIndexed(ctx, func(tx *sql.Tx, a *appender) (w indexWrite, _ error) {
		out, created = dispatch.Task{}, false // a run again starts afresh
		res, err := tx.ExecContext(ctx, `
			INSERT INTO tasks (id, state, customer_id, courier_id, offer_courier_id, priority_rank, create_time,
				update_time, due_time, created_by, request_id, version, doc, pickup_lat, pickup_lng)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
			ON CONFLICT (created_by, request_id) DO NOTHING`,
			t.ID, string(t.State), t.CustomerID, nullString(t.CourierID), nullString(offerCourier(&t)), t.Priority.Rank(),
			s.time(t.CreateTime), s.time(t.UpdateTime), s.nullTime(t.DueTime), t.CreatedBy, nullString(t.RequestID),
			t.Version, doc, t.Pickup.Location.Lat, t.Pickup.Location.Lng)
		if err != nil {
			return w, s.e.MapError(err, "insert task "+t.ID)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return w, s.e.MapError(err, "insert task "+t.ID)
		}
		if n == 0 {
			// The request was made before: answer with its task.
			prev, err := s.scanTask(tx.QueryRowContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE created_by = $1 AND request_id = $2`,
				t.CreatedBy, t.RequestID))
			if err != nil {
				return w, s.e.MapError(err, fmt.Sprintf("load task of request %s by %s", t.RequestID, t.CreatedBy))
			}
			out = prev
			return w, nil
		}
		if _, err := tx.ExecContext(ctx, countOpenTask, t.CustomerID, maxOpen); err != nil {
			return w, s.capError(err, "count the open tasks of customer "+t.CustomerID)
		}
		if err := s.insertOffers(ctx, tx, t.ID, nil, t.Offers); err != nil {
			return w, err
		}
		if _, err := a.append(ctx, tx, dispatch.TopicTask, t.ID, []byte(t.State)); err != nil {
			return w, err
		}
		out, created = t, true
		w.addTask(&out)
		return w, nil
	})
	if err != nil {
		return dispatch.Task{}, false, err
	}
	if created {
		s.docs.put(doc, out)
	}
	return out, created, nil
}

// insertOffers records the offers of next that prev does not have, for TaskByOffer.
func (s *Store) insertOffers(ctx context.Context, tx *sql.Tx, taskID string, prev, next []dispatch.Offer) error {
	offers, err := newOffers(taskID, prev, next)
	if err != nil || len(offers) == 0 {
		return err
	}
	args := make([]any, 0, 3*len(offers))
	values := make([]string, 0, len(offers))
	for i, o := range offers {
		args = append(args, o.ID, taskID, o.CourierID)
		values = append(values, "("+placeholders(3*i+1, 3)+")")
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO offers (offer_id, task_id, courier_id) VALUES `+strings.Join(values, ", ")+`
		ON CONFLICT (offer_id) DO NOTHING`, args...)
	if err != nil {
		return s.e.MapError(err, "record offers of task "+taskID)
	}
	return nil
}

// formerHolder returns the courier that held cur, the task as stored, and no longer does in next, the
// task written (it handed the task back, or the task was moved to another courier or taken from it): a
// row of former_holders, so that the courier's ListTasks still finds the task. "" when none.
func formerHolder(cur, next dispatch.Task) string {
	if cur.CourierID == "" || next.CourierID == cur.CourierID {
		return ""
	}
	return cur.CourierID
}

// newOffers returns the offers of next that prev, the task's offers before a change, does not have:
// Internal when one has no id or no courier.
func newOffers(taskID string, prev, next []dispatch.Offer) ([]dispatch.Offer, error) {
	var out []dispatch.Offer
	for _, o := range next {
		if slices.ContainsFunc(prev, func(p dispatch.Offer) bool { return p.ID == o.ID }) {
			continue
		}
		if o.ID == "" || o.CourierID == "" {
			return nil, apperr.Errorf(apperr.Internal, "task %s: offer without an id or a courier", taskID)
		}
		out = append(out, o)
	}
	return out, nil
}

// GetTask implements dispatch.Store.
func (s *Store) GetTask(ctx context.Context, id string) (dispatch.Task, error) {
	return s.getTask(ctx, s.read, id, "")
}

// getTask reads task id, ending the statement with lock.
func (s *Store) getTask(ctx context.Context, q querier, id, lock string) (dispatch.Task, error) {
	t, err := s.scanTask(q.QueryRowContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1`+lock, id))
	if errors.Is(err, sql.ErrNoRows) {
		return dispatch.Task{}, taskNotFound(id)
	}
	if err != nil {
		return dispatch.Task{}, s.e.MapError(err, "load task "+id)
	}
	return t, nil
}

// TaskHolder implements dispatch.Store from the state, courier_id and version columns, which every
// write of the task sets with its doc.
func (s *Store) TaskHolder(ctx context.Context, id string) (dispatch.State, string, int64, error) {
	var (
		state   string
		courier sql.NullString
		version int64
	)
	err := s.read.QueryRowContext(ctx, `SELECT state, courier_id, version FROM tasks WHERE id = $1`, id).Scan(&state, &courier, &version)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", 0, taskNotFound(id)
	}
	if err != nil {
		return "", "", 0, s.e.MapError(err, "load holder of task "+id)
	}
	return dispatch.State(state), courier.String, version, nil
}

// TaskByOffer implements dispatch.Store.
func (s *Store) TaskByOffer(ctx context.Context, offerID string) (dispatch.Task, error) {
	return s.taskByOffer(ctx, s.read, offerID, "")
}

// taskByOffer reads the task that has offer offerID, ending the statement with lock.
func (s *Store) taskByOffer(ctx context.Context, q querier, offerID, lock string) (dispatch.Task, error) {
	t, err := s.scanTask(q.QueryRowContext(ctx, `
		SELECT `+taskColumns+` FROM tasks WHERE id = (SELECT task_id FROM offers WHERE offer_id = $1)`+lock, offerID))
	if errors.Is(err, sql.ErrNoRows) {
		return dispatch.Task{}, apperr.Errorf(apperr.NotFound, "offer %s not found", offerID)
	}
	if err != nil {
		return dispatch.Task{}, s.e.MapError(err, "load task of offer "+offerID)
	}
	return t, nil
}

// filterSQL returns the conditions of f, numbering placeholders after those already in args.
func filterSQL(f dispatch.TaskFilter, args []any) ([]string, []any) {
	var conds []string
	if len(f.States) > 0 {
		in := make([]string, len(f.States))
		for i, st := range f.States {
			args = append(args, string(st))
			in[i] = "$" + strconv.Itoa(len(args))
		}
		conds = append(conds, "state IN ("+strings.Join(in, ", ")+")")
	}
	if f.CourierID != "" {
		args = append(args, f.CourierID)
		n := "$" + strconv.Itoa(len(args))
		if f.AnyHolder {
			conds = append(conds, "id IN ("+heldBy(n)+")")
		} else {
			conds = append(conds, "courier_id = "+n)
		}
	}
	if f.CustomerID != "" {
		args = append(args, f.CustomerID)
		conds = append(conds, "customer_id = $"+strconv.Itoa(len(args)))
	}
	return conds, args
}

// heldBy is a query of the ids of the tasks the courier in placeholder n holds or held at some point: its
// current or last holder's (tasks.courier_id) and those it held before (former_holders).
func heldBy(n string) string {
	return "SELECT id FROM tasks WHERE courier_id = " + n + " UNION SELECT task_id FROM former_holders WHERE courier_id = " + n
}

// fromTasks returns the FROM clause of a read of the tasks that match f, and f's conditions. With
// f.AnyHolder, the courier's tasks are found first, by id, and the other conditions checked on them, so
// that the read costs that courier's tasks rather than a walk of the table.
func (s *Store) fromTasks(f dispatch.TaskFilter, args []any) (string, []string, []any) {
	if f.CourierID == "" || !f.AnyHolder {
		conds, args := filterSQL(f, args)
		return "tasks", conds, args
	}
	args = append(args, f.CourierID)
	join := " JOIN "
	if s.e.Dialect == database.SQLite {
		join = " CROSS JOIN " // SQLite joins in the order written: the courier's ids, then tasks by its key
	}
	from := "(" + heldBy("$"+strconv.Itoa(len(args))) + ") AS held" + join + "tasks ON tasks.id = held.id"
	f.CourierID, f.AnyHolder = "", false
	conds, args := filterSQL(f, args)
	return from, conds, args
}

func where(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// ListTasks implements dispatch.Store. A limit above MaxLimit is lowered to it; a limit below 1 is
// Invalid.
func (s *Store) ListTasks(ctx context.Context, q dispatch.TaskQuery) ([]dispatch.Task, error) {
	limit, err := database.RowLimit(q.Limit, MaxLimit)
	if err != nil {
		return nil, err
	}
	from, conds, args := s.fromTasks(q.Filter, nil)
	if !q.AfterCreate.IsZero() || q.AfterID != "" {
		args = append(args, s.time(q.AfterCreate), q.AfterID)
		c, i := "$"+strconv.Itoa(len(args)-1), "$"+strconv.Itoa(len(args))
		conds = append(conds, "(tasks.create_time < "+c+" OR (tasks.create_time = "+c+" AND tasks.id < "+i+"))")
	}
	args = append(args, limit)
	return s.queryTasks(ctx, s.read, `SELECT `+taskColumns+` FROM `+from+where(conds)+
		` ORDER BY tasks.create_time DESC, tasks.id DESC LIMIT $`+strconv.Itoa(len(args)), "list tasks", args...)
}

// queryTasks runs a query of taskColumns.
func (s *Store) queryTasks(ctx context.Context, q querier, query, what string, args ...any) ([]dispatch.Task, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, s.e.MapError(err, what)
	}
	out, err := collect(rows, s.scanTask)
	if err != nil {
		return nil, s.e.MapError(err, what)
	}
	return out, nil
}

// CountTasks implements dispatch.Store.
func (s *Store) CountTasks(ctx context.Context, f dispatch.TaskFilter) (int, error) {
	from, conds, args := s.fromTasks(f, nil)
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM `+from+where(conds), args...).Scan(&n); err != nil {
		return 0, s.e.MapError(err, "count tasks")
	}
	return n, nil
}

// CountByState implements dispatch.Store. Every state is in the map, with 0 when no task is in it.
func (s *Store) CountByState(ctx context.Context) (map[dispatch.State]int, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT state, count(*) FROM tasks GROUP BY state`)
	if err != nil {
		return nil, s.e.MapError(err, "count tasks by state")
	}
	type count struct {
		state dispatch.State
		n     int
	}
	counts, err := collect(rows, func(r scanner) (count, error) {
		var c count
		err := r.Scan(&c.state, &c.n)
		return c, err
	})
	if err != nil {
		return nil, s.e.MapError(err, "count tasks by state")
	}
	out := make(map[dispatch.State]int, len(dispatch.States))
	for _, st := range dispatch.States {
		out[st] = 0
	}
	for _, c := range counts {
		out[c.state] = c.n
	}
	return out, nil
}

// UpdateTask implements dispatch.Store. The closure gets a copy of the stored task; what it returns
// keeps the stored task's identity (ID, CreatedBy, RequestID, RequestHash, CreateTime), whatever it
// says, and gets the stored version plus one. fn may run more than once (see the package
// documentation).
func (s *Store) UpdateTask(ctx context.Context, id string, fn func(dispatch.Task) (dispatch.Change, error)) (dispatch.Task, error) {
	return s.updateTask(ctx, func(q querier, lock string) (dispatch.Task, error) { return s.getTask(ctx, q, id, lock) }, fn)
}

// UpdateTaskByOffer implements dispatch.Store: UpdateTask for the task read and locked by its offer's
// id, in one statement.
func (s *Store) UpdateTaskByOffer(ctx context.Context, offerID string, fn func(dispatch.Task) (dispatch.Change, error)) (dispatch.Task, error) {
	return s.updateTask(ctx, func(q querier, lock string) (dispatch.Task, error) { return s.taskByOffer(ctx, q, offerID, lock) }, fn)
}

// updateTask is UpdateTask with the task read (and locked, with the engine's Lock) by read: in the
// transaction, and on SQLite (GroupCommit) first ahead of it from the read pool, to run fn and prepare
// its change there; the transaction then writes that change if the task's stored version and due time
// are still the ones fn saw, and reads the task, runs fn and writes its change as before otherwise (see
// UpdateTasks). The read, fn and the documents' encoding leave the one writer.
func (s *Store) updateTask(ctx context.Context, read func(q querier, lock string) (dispatch.Task, error), fn func(dispatch.Task) (dispatch.Change, error)) (dispatch.Task, error) {
	var (
		out dispatch.Task
		doc string
		pre *preparedChange
	)
	if s.group != nil {
		if c, err := read(s.read, ""); err == nil {
			if ch, ok := runAhead(fn, c.Clone()); ok {
				pre, _ = s.prepareChange(c, ch) // nil when it cannot be: the transaction fails the same way
			}
		}
	}
	err := s.inTxIndexed(ctx, func(tx *sql.Tx, a *appender) (w indexWrite, _ error) {
		if pre != nil {
			written, err := s.writePrepared(ctx, tx, pre, true)
			if err != nil {
				return w, err
			}
			if written {
				out, doc = pre.next, pre.doc
				w.addTask(&out)
				return w, s.appendChange(ctx, tx, a, out, pre.ch)
			}
		}
		cur, err := read(tx, s.e.Lock)
		if err != nil {
			return w, err
		}
		ch, err := fn(cur.Clone())
		if err != nil {
			return w, err
		}
		if s.e.Dialect == database.Postgres && onePostgresStatement(cur, ch) {
			out, doc, err = s.writeChangePostgres(ctx, tx, a, cur, ch)
			return w, err
		}
		if out, doc, err = s.applyChange(ctx, tx, cur, ch); err != nil {
			return w, err
		}
		w.addTask(&out)
		return w, s.appendChange(ctx, tx, a, out, ch)
	})
	if err != nil {
		return dispatch.Task{}, err
	}
	s.docs.put(doc, out)
	return out, nil
}

// applyChange writes ch, what a closure returned for cur as read (and locked) in tx, except its events
// and deliveries (appendChange), and returns the task written and its document (for s.docs once the
// transaction committed).
func (s *Store) applyChange(ctx context.Context, tx *sql.Tx, cur dispatch.Task, ch dispatch.Change) (dispatch.Task, string, error) {
	p, err := s.prepareChange(cur, ch)
	if err != nil {
		return dispatch.Task{}, "", err
	}
	if _, err := s.writePrepared(ctx, tx, p, false); err != nil {
		return dispatch.Task{}, "", err
	}
	return p.next, p.doc, nil
}

// preparedChange is a change ready to be written: the task and decision documents are made before the
// transaction needs them (prepareChange), so that they can be made before it begins.
type preparedChange struct {
	cur, next dispatch.Task
	ch        dispatch.Change
	doc       string // next's document
	// The decision as stored and its stored form, when ch has one; decisionErr is why it cannot be
	// written, returned where it would be written, after the task's row and offers.
	decision       dispatch.Decision
	decisionStored storedDecision
	decisionErr    error
}

// prepareChange makes ch, what a closure returned for cur, ready to be written: the task written keeps
// cur's identity and gets its version plus one.
func (s *Store) prepareChange(cur dispatch.Task, ch dispatch.Change) (*preparedChange, error) {
	id := cur.ID
	if len(ch.Jobs) > 0 && s.jobs == nil {
		return nil, apperr.Errorf(apperr.Internal, "task %s: %d jobs to enqueue and no job queue configured", id, len(ch.Jobs))
	}
	next := ch.Task.Stored()
	next.ID, next.CreatedBy, next.RequestID, next.RequestHash, next.CreateTime = cur.ID, cur.CreatedBy, cur.RequestID, cur.RequestHash, cur.CreateTime
	next.Version = cur.Version + 1
	if ch.Quiet {
		next.Version = cur.Version // nothing a reader sees changed: the etag stays
	}
	doc, err := encodeTask(&next)
	if err != nil {
		return nil, err
	}
	if err := s.storable(doc, "task "+next.ID); err != nil {
		return nil, err
	}
	p := &preparedChange{cur: cur, next: next, ch: ch, doc: doc}
	if ch.Decision != nil {
		p.decision, p.decisionStored, p.decisionErr = s.decisionToStore(id, *ch.Decision)
	}
	return p, nil
}

// writePrepared writes p in tx as applyChange does: Aborted when the stored version is no longer
// p.cur's. With guarded, a task whose stored version or due time is no longer p.cur's is not an error:
// nothing is written and it returns false.
func (s *Store) writePrepared(ctx context.Context, tx *sql.Tx, p *preparedChange, guarded bool) (bool, error) {
	id := p.cur.ID
	written, err := s.writeTask(ctx, tx, p.cur, p.next, p.doc, guarded)
	if err != nil || !written {
		return false, err
	}
	if err := s.insertOffers(ctx, tx, id, p.cur.Offers, p.next.Offers); err != nil {
		return false, err
	}
	if c := formerHolder(p.cur, p.next); c != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO former_holders (courier_id, task_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, c, id); err != nil {
			return false, s.e.MapError(err, "record the former holder of task "+id)
		}
	}
	ch := p.ch
	if ch.Decision != nil {
		if p.decisionErr != nil {
			return false, p.decisionErr
		}
		if err := s.insertDecision(ctx, tx, id, p.decision, p.decisionStored); err != nil {
			return false, err
		}
		if ch.KeepDecisions > 0 {
			if err := s.pruneDecisions(ctx, tx, id, ch.KeepDecisions); err != nil {
				return false, err
			}
		}
	}
	if ch.Command != nil {
		if err := s.insertCommand(ctx, tx, *ch.Command, p.next.UpdateTime, false); err != nil {
			return false, err
		}
	}
	if len(ch.Jobs) > 0 {
		if err := s.jobs(ctx, tx, ch.Jobs); err != nil {
			return false, s.e.MapError(err, fmt.Sprintf("enqueue %d jobs of task %s", len(ch.Jobs), id))
		}
	}
	return true, nil
}

// appendChange appends the event of next, written by applyChange for ch, and ch's deliveries: last in
// the transaction (see the package documentation).
func (s *Store) appendChange(ctx context.Context, tx *sql.Tx, a *appender, next dispatch.Task, ch dispatch.Change) error {
	if !ch.Quiet {
		if _, err := a.append(ctx, tx, dispatch.TopicTask, next.ID, []byte(next.State)); err != nil {
			return err
		}
	}
	if ch.Waiting {
		if _, err := a.append(ctx, tx, dispatch.TopicWaiting, next.ID, nil); err != nil {
			return err
		}
	}
	for _, d := range ch.Deliveries {
		if err := s.insertDelivery(ctx, tx, a, d, next.UpdateTime); err != nil {
			return err
		}
	}
	return nil
}

// appendChanges is appendChange for every written task of a batch (errs[i] nil), in their order, in
// two statements on PostgreSQL instead of three round trips per task: the events (each task's, then
// its deliveries') in one AppendMany, then the deliveries, with those events' numbers as cursors, in
// one insert.
func (s *Store) appendChanges(ctx context.Context, tx *sql.Tx, a *appender, next []dispatch.Task, changes []dispatch.Change, errs []error) error {
	var (
		events []eventlog.Event
		dels   []dispatch.Delivery
		isDel  []bool
		waits  bool
	)
	for i := range next {
		if errs[i] != nil {
			continue
		}
		if changes[i].Waiting && !waits {
			waits = true
			events = append(events, eventlog.Event{Topic: dispatch.TopicWaiting, Key: next[i].ID})
			isDel = append(isDel, false)
		}
		if !changes[i].Quiet {
			events = append(events, eventlog.Event{Topic: dispatch.TopicTask, Key: next[i].ID, Payload: []byte(next[i].State)})
			isDel = append(isDel, false)
		}
		for _, d := range changes[i].Deliveries {
			d, err := deliveryToStore(d, next[i].UpdateTime)
			if err != nil {
				return err
			}
			events = append(events, eventlog.Event{Topic: dispatch.TopicDelivery, Key: d.CourierID, Payload: []byte(d.TaskID)})
			isDel = append(isDel, true)
			dels = append(dels, d)
		}
	}
	seqs, err := a.appendMany(ctx, tx, events)
	if err != nil || len(dels) == 0 {
		return err
	}
	n := len(dels)
	couriers, cursors, kinds, tasks, offers, reasons, times := make([]string, n), make([]int64, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]time.Time, n)
	j := 0
	for i, seq := range seqs {
		if !isDel[i] {
			continue
		}
		d := dels[j]
		couriers[j], cursors[j], kinds[j], tasks[j], offers[j], reasons[j], times[j] = d.CourierID, seq, string(d.Kind), d.TaskID, d.OfferID, string(d.Reason), storedTime(d.CreateTime)
		j++
	}
	_, err = tx.ExecContext(ctx, `
		INSERT INTO deliveries (courier_id, cursor, kind, task_id, offer_id, reason, create_time)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])`,
		couriers, cursors, kinds, tasks, offers, reasons, times)
	if err != nil {
		return s.e.MapError(err, fmt.Sprintf("record %d deliveries", n))
	}
	return nil
}

// maxBatchLock bounds the ids one locking read of UpdateTasks names.
const maxBatchLock = 256

// UpdateTasks implements dispatch.Store. The transaction first reads and locks every task named, in id
// order (so that two batches never wait for each other in a cycle), then runs the closures and writes
// in the order of updates. The tasks' events are appended after all of their rows were written, in that
// order; on PostgreSQL a retryable failure runs the whole transaction again, as UpdateTask does.
//
// On SQLite (GroupCommit) the closures run ahead of the transaction, on the tasks as the read pool has
// them (prepareWrites), and the transaction writes what they returned only where the task's stored
// version and due time are still the ones the closure saw; any other task is read, its closure run and
// its change written in the transaction as above. Either way each closure's result is written for the
// task as stored when it is written; the reading, the closures and the documents' encoding are what the
// one writer no longer waits for.
func (s *Store) UpdateTasks(ctx context.Context, updates []dispatch.TaskWrite) ([]dispatch.Task, []error) {
	out := make([]dispatch.Task, len(updates))
	errs := make([]error, len(updates))
	if len(updates) == 0 {
		return out, errs
	}
	ids := make([]string, 0, len(updates))
	for _, u := range updates {
		ids = append(ids, u.ID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	pre := s.prepareWrites(ctx, updates, ids)
	read := ids // the tasks the transaction reads first: those not prepared
	if pre != nil {
		read = make([]string, 0, len(ids))
		for i, u := range updates {
			if pre[i] == nil {
				read = append(read, u.ID)
			}
		}
		slices.Sort(read)
	}
	docs := make([]string, len(updates))
	err := s.inTxIndexed(ctx, func(tx *sql.Tx, a *appender) (w indexWrite, _ error) {
		clear(out)
		clear(errs) // a run again starts afresh
		clear(docs)
		cur, err := s.tasksByID(ctx, tx, read, " ORDER BY id"+s.e.Lock)
		if err != nil {
			return w, err
		}
		changes := make([]dispatch.Change, len(updates))
		// On PostgreSQL, when no task is named twice, the changes without a command or jobs (a batch's
		// offers) are written together by three statements after the loop (pgWrites).
		var pg *pgWrites
		if s.e.Dialect == database.Postgres && len(ids) == len(updates) {
			pg = &pgWrites{}
		}
		for i, u := range updates {
			if pre != nil && pre[i] != nil {
				p := pre[i]
				written, err := s.writePrepared(ctx, tx, p, true)
				if err != nil {
					return w, fmt.Errorf("update task %d of %d: %w", i+1, len(updates), err)
				}
				if written {
					out[i], cur[u.ID], changes[i], docs[i] = p.next, p.next, p.ch, p.doc
					continue
				}
				// The task changed since the closure saw it: the usual way.
				t, err := s.getTask(ctx, tx, u.ID, s.e.Lock)
				if err != nil && apperr.CodeOf(err) != apperr.NotFound {
					return w, err
				}
				if err == nil {
					cur[u.ID] = t
				}
			}
			c, ok := cur[u.ID]
			if !ok {
				errs[i] = taskNotFound(u.ID)
				continue
			}
			ch, err := u.Fn(c.Clone())
			if err != nil {
				errs[i] = err
				continue
			}
			var (
				next dispatch.Task
				doc  string
			)
			if pg != nil && ch.Command == nil && len(ch.Jobs) == 0 {
				next, doc, err = s.queueChange(pg, c, ch)
			} else {
				next, doc, err = s.applyChange(ctx, tx, c, ch)
			}
			if err != nil {
				return w, fmt.Errorf("update task %d of %d: %w", i+1, len(updates), err)
			}
			out[i], cur[u.ID], changes[i], docs[i] = next, next, ch, doc
		}
		if pg != nil {
			if err := pg.flush(ctx, s, tx); err != nil {
				return w, err
			}
		}
		// Every append after every row written: on PostgreSQL the log's lock is held from the first
		// append to the commit, so the batch holds it as briefly as a single update does.
		if s.e.Dialect == database.Postgres {
			return w, s.appendChanges(ctx, tx, a, out, changes, errs)
		}
		waits := false
		for i := range updates {
			if errs[i] != nil {
				continue
			}
			ch := changes[i]
			ch.Waiting = ch.Waiting && !waits // one TopicWaiting event per transaction
			waits = waits || ch.Waiting
			if err := s.appendChange(ctx, tx, a, out[i], ch); err != nil {
				return w, fmt.Errorf("update task %d of %d: %w", i+1, len(updates), err)
			}
			w.addTask(&out[i])
		}
		return w, nil
	})
	if err == nil {
		for i, doc := range docs {
			if errs[i] == nil {
				s.docs.put(doc, out[i])
			}
		}
		return out, errs
	}
	if ctx.Err() != nil {
		for i := range errs {
			out[i], errs[i] = dispatch.Task{}, err
		}
		return out, errs
	}
	// One write failed the transaction: each update alone, so that the others are written.
	for i, u := range updates {
		out[i], errs[i] = s.UpdateTask(ctx, u.ID, u.Fn)
	}
	return out, errs
}

// tasksByID reads the tasks of ids through q, by id, maxBatchLock per statement, each statement's
// SELECT ending with suffix (an ORDER BY and the engine's lock, or nothing): those not found are not in
// the map.
func (s *Store) tasksByID(ctx context.Context, q querier, ids []string, suffix string) (map[string]dispatch.Task, error) {
	out := make(map[string]dispatch.Task, len(ids))
	for part := range slices.Chunk(ids, maxBatchLock) {
		cond, arg, err := s.inList("id", 1, part)
		if err != nil {
			return nil, err
		}
		got, err := s.queryTasks(ctx, q, `SELECT `+taskColumns+` FROM tasks WHERE `+cond+suffix, fmt.Sprintf("load %d tasks", len(part)), arg)
		if err != nil {
			return nil, err
		}
		for _, t := range got {
			out[t.ID] = t
		}
	}
	return out, nil
}

// prepareWrites runs the closures of updates ahead of their transaction, on SQLite (GroupCommit), on the
// tasks as the read pool has them, and prepares their changes: what UpdateTasks then writes if the tasks
// are still as read. An update is prepared when its task was found, its closure returned a change and
// the change could be prepared; the others (nil) go the usual way in the transaction, where a failing
// closure fails again with its error for the task as stored then. It returns nil on PostgreSQL, when
// updates name a task twice (the second closure must see the first's result), or when the read fails.
func (s *Store) prepareWrites(ctx context.Context, updates []dispatch.TaskWrite, ids []string) []*preparedChange {
	if s.group == nil || len(ids) != len(updates) {
		return nil
	}
	read, err := s.tasksByID(ctx, s.read, ids, "")
	if err != nil {
		return nil
	}
	pre := make([]*preparedChange, len(updates))
	for i, u := range updates {
		c, ok := read[u.ID]
		if !ok {
			continue
		}
		ch, ok := runAhead(u.Fn, c.Clone())
		if !ok {
			continue
		}
		if p, err := s.prepareChange(c, ch); err == nil {
			pre[i] = p
		}
	}
	return pre
}

// runAhead runs fn on t; false when it failed or panicked (the transaction runs it again, and its
// failure or panic is then its caller's, as without running ahead).
func runAhead(fn func(dispatch.Task) (dispatch.Change, error), t dispatch.Task) (ch dispatch.Change, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	ch, err := fn(t)
	return ch, err == nil
}

// writeTask replaces cur, as read, with next, whose document is doc: Aborted when the stored version
// is no longer cur's. With guarded (SQLite only), a stored version or due time other than cur's is not
// an error: nothing is written and it returns false.
//
// The columns that only copy the document and hold the same value in cur and next (the customer, the
// holder, the courier of the open offer, the priority) are left out of the SET list: the row written
// is the same, and SQLite rewrites the entries of every index that has a column named in SET whatever
// the value, a page each (tasks_customer_list, keyed by customer, lands on a leaf of its own per
// task). The version check makes cur's values the stored ones.
func (s *Store) writeTask(ctx context.Context, tx *sql.Tx, cur, next dispatch.Task, doc string, guarded bool) (bool, error) {
	args := make([]any, 0, 12)
	args = append(args, string(next.State), s.time(next.UpdateTime), s.nullTime(next.DueTime), next.Version, doc)
	var changed int
	column := func(bit int, differs bool, v any) {
		if differs {
			changed |= bit
			args = append(args, v)
		}
	}
	nextOffer := offerCourier(&next)
	column(setCustomer, next.CustomerID != cur.CustomerID, next.CustomerID)
	column(setCourier, next.CourierID != cur.CourierID, nullString(next.CourierID))
	column(setOfferCourier, nextOffer != offerCourier(&cur), nullString(nextOffer))
	column(setPriority, next.Priority.Rank() != cur.Priority.Rank(), next.Priority.Rank())
	args = append(args, next.ID, cur.Version)
	if guarded {
		args = append(args, s.nullTime(cur.DueTime))
	}
	query := updateTaskSQL[changed][boolIndex(guarded)]
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return false, s.e.MapError(err, "update task "+next.ID)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, s.e.MapError(err, "update task "+next.ID)
	}
	if n != 1 {
		if guarded {
			return false, nil
		}
		return false, apperr.Errorf(apperr.Aborted, "task %s changed while it was being updated", next.ID)
	}
	return true, nil
}

// The columns writeTask names in SET only when their value changes, as bits of an index into
// updateTaskSQL.
const (
	setCustomer = 1 << iota
	setCourier
	setOfferCourier
	setPriority
	setColumns = 1 << iota
)

// updateTaskSQL holds writeTask's statement for each set of changed columns (setCustomer...), without
// and with the guard on the due time: state, update_time, due_time, version and doc ($1-$5), then the
// changed columns in the order of their bits, then the id and the version read, then the due time read.
var updateTaskSQL = func() (q [setColumns][2]string) {
	names := []string{"customer_id", "courier_id", "offer_courier_id", "priority_rank"}
	for changed := range setColumns {
		var b strings.Builder
		b.WriteString("UPDATE tasks SET state = $1, update_time = $2, due_time = $3, version = $4, doc = $5")
		n := 5
		for i, name := range names {
			if changed&(1<<i) != 0 {
				n++
				fmt.Fprintf(&b, ", %s = $%d", name, n)
			}
		}
		fmt.Fprintf(&b, " WHERE id = $%d AND version = $%d", n+1, n+2)
		q[changed][0] = b.String()
		q[changed][1] = q[changed][0] + fmt.Sprintf(" AND due_time IS $%d", n+3)
	}
	return q
}()

// boolIndex is 1 for true, 0 for false.
func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// decisionToStore returns d as stored for task taskID, and its stored form: binary, or JSON for a
// decision the binary form declines (see decisionBin).
func (s *Store) decisionToStore(taskID string, d dispatch.Decision) (dispatch.Decision, storedDecision, error) {
	d = normalizeDecision(d)
	if d.ID == "" {
		return d, storedDecision{}, apperr.Errorf(apperr.Internal, "task %s: decision without an id", taskID)
	}
	if d.TaskID == "" {
		d.TaskID = taskID
	}
	what := "decision " + d.ID + " of task " + taskID
	if bin, ok, nul := decisionBin(&d); ok {
		if nul && s.e.RefuseNUL {
			// As the JSON document's NUL escape would be (storable).
			return d, storedDecision{}, apperr.Errorf(apperr.Invalid, "%s: value cannot be stored: a NUL character", what)
		}
		return d, storedDecision{doc: noDecisionDoc, bin: bin}, nil
	}
	doc, err := encodeDecision(&d)
	if err != nil {
		return d, storedDecision{}, err
	}
	if err := s.storable(doc, what); err != nil {
		return d, storedDecision{}, err
	}
	return d, storedDecision{doc: doc}, nil
}

// insertDecision inserts d, stored as sd, or replaces the decision with its id.
func (s *Store) insertDecision(ctx context.Context, tx *sql.Tx, taskID string, d dispatch.Decision, sd storedDecision) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO decisions (id, task_id, decide_time, doc, bin) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET decide_time = excluded.decide_time, doc = excluded.doc, bin = excluded.bin`,
		d.ID, d.TaskID, s.time(d.DecideTime), sd.doc, sd.binArg())
	if err != nil {
		return s.e.MapError(err, "record decision "+d.ID+" of task "+taskID)
	}
	return nil
}

// pruneDecisions deletes the decisions of task taskID beyond the newest keep (dispatch.Change.KeepDecisions).
func (s *Store) pruneDecisions(ctx context.Context, tx *sql.Tx, taskID string, keep int) error {
	_, err := tx.ExecContext(ctx, `
		DELETE FROM decisions WHERE task_id = $1 AND id NOT IN (
			SELECT id FROM decisions WHERE task_id = $1 ORDER BY decide_time DESC, id DESC LIMIT $2)`, taskID, keep)
	if err != nil {
		return s.e.MapError(err, "prune the decisions of task "+taskID)
	}
	return nil
}

// Decisions implements dispatch.Store. A limit above MaxLimit is lowered to it; a limit below 1 is
// Invalid.
func (s *Store) Decisions(ctx context.Context, taskID string, limit int) ([]dispatch.Decision, error) {
	limit, err := database.RowLimit(limit, MaxLimit)
	if err != nil {
		return nil, err
	}
	rows, err := s.read.QueryContext(ctx, `
		SELECT doc, bin FROM decisions WHERE task_id = $1 ORDER BY decide_time DESC, id DESC LIMIT $2`, taskID, limit)
	if err != nil {
		return nil, s.e.MapError(err, "load decisions of task "+taskID)
	}
	out, err := collect(rows, func(r scanner) (dispatch.Decision, error) {
		var doc, bin []byte
		if err := r.Scan(&doc, &bin); err != nil {
			return dispatch.Decision{}, err
		}
		return decodeDecision(doc, bin)
	})
	if err != nil {
		return nil, s.e.MapError(err, "load decisions of task "+taskID)
	}
	return out, nil
}

// LeaseDue implements dispatch.Store. Times compare to the microsecond, as stored: a lease holds through
// the microsecond it ends in, and a task is due from the microsecond of its due time. A limit above MaxLimit is lowered to it; a limit below 1 is Invalid.
func (s *Store) LeaseDue(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]dispatch.Task, error) {
	limit, err := database.RowLimit(limit, MaxLimit)
	if err != nil {
		return nil, err
	}
	if owner == "" || lease <= 0 {
		return nil, apperr.Errorf(apperr.Invalid, "lease needs an owner and a positive duration")
	}
	// One statement picks and leases (a round trip, and no transaction around it): the pick walks the
	// rows in lease order and stops at the limit; it takes only narrow columns, and only the tasks
	// leased are returned whole, then sorted here. Times compare as stored, to the microsecond.
	due, err := s.queryTasks(ctx, s.db, `UPDATE tasks SET lease_owner = $1, lease_until = $2 WHERE id IN (
			SELECT id FROM tasks`+s.e.DueIndex+` WHERE due_time <= $3 AND (lease_until IS NULL OR lease_until < $3)
			ORDER BY priority_rank DESC, create_time, id LIMIT $4`+s.e.SkipLocked+`)
		RETURNING `+taskColumns, "lease due tasks", owner, s.time(now.Add(lease)), s.time(now), limit)
	if err != nil || len(due) == 0 {
		return nil, err
	}
	slices.SortFunc(due, func(a, b dispatch.Task) int {
		return cmp.Or(cmp.Compare(b.Priority.Rank(), a.Priority.Rank()), a.CreateTime.Compare(b.CreateTime), strings.Compare(a.ID, b.ID))
	})
	return due, nil
}

// Unlease implements dispatch.Store.
func (s *Store) Unlease(ctx context.Context, taskID, owner string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE tasks SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2`,
		taskID, owner)
	if err != nil {
		return s.e.MapError(err, "unlease task "+taskID)
	}
	return nil
}

// UnleaseTasks implements dispatch.Store.
func (s *Store) UnleaseTasks(ctx context.Context, taskIDs []string, owner string) error {
	for start := 0; start < len(taskIDs); start += maxBatchLock {
		part := taskIDs[start:min(start+maxBatchLock, len(taskIDs))]
		cond, arg, err := s.inList("id", 2, part)
		if err != nil {
			return err
		}
		_, err = s.db.ExecContext(ctx, `UPDATE tasks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 AND `+cond, owner, arg)
		if err != nil {
			return s.e.MapError(err, fmt.Sprintf("unlease %d tasks", len(part)))
		}
	}
	return nil
}

// OneProcess implements dispatch.Store: the engine says (Engine.OneProcess).
func (s *Store) OneProcess() bool { return s.e.OneProcess }

// UnleaseOthers implements dispatch.Store. It walks the work queue's index (the tasks with a due time),
// not the whole table: a lease left on a task that has left the queue since is never looked at again.
func (s *Store) UnleaseOthers(ctx context.Context, owner string) (int, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE tasks`+s.e.DueIndex+` SET lease_owner = NULL, lease_until = NULL
		WHERE due_time IS NOT NULL AND lease_owner IS NOT NULL AND lease_owner <> $1`, owner)
	if err != nil {
		return 0, s.e.MapError(err, "unlease the tasks of other owners")
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, s.e.MapError(err, "unlease the tasks of other owners")
	}
	return int(n), nil
}

// WakePending implements dispatch.Store. Only the due_time column changes (it wins over the doc's
// DueTime on every read); the tasks' versions stay.
func (s *Store) WakePending(ctx context.Context, now time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx, _ *appender) error {
		return s.wakeWaiting(ctx, tx, now, "wake pending tasks", "")
	})
}

// WakeNext implements dispatch.Store. Like WakePending, only the due_time column changes.
func (s *Store) WakeNext(ctx context.Context, now time.Time, limit int) error {
	limit, err := database.RowLimit(limit, MaxLimit)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx, _ *appender) error {
		return s.wakeWaiting(ctx, tx, now, fmt.Sprintf("wake the next %d pending tasks", limit),
			`id IN (SELECT id FROM tasks WHERE state = $2 AND due_time > $1 ORDER BY priority_rank DESC, create_time, id LIMIT $3)`, limit)
	})
}

// WakeTasks implements dispatch.Store, in one statement per maxBatchLock ids. Like WakePending, only
// the due_time column changes.
func (s *Store) WakeTasks(ctx context.Context, now time.Time, taskIDs []string) error {
	return s.inTx(ctx, func(tx *sql.Tx, _ *appender) error {
		for start := 0; start < len(taskIDs); start += maxBatchLock {
			part := taskIDs[start:min(start+maxBatchLock, len(taskIDs))]
			cond, arg, err := s.inList("id", 3, part)
			if err != nil {
				return err
			}
			if err := s.wakeWaiting(ctx, tx, now, fmt.Sprintf("wake %d tasks", len(part)), cond, arg); err != nil {
				return err
			}
		}
		return nil
	})
}

// AnyWaiting implements dispatch.Store: one look into the tasks_waiting index, whose first entry after
// now answers.
func (s *Store) AnyWaiting(ctx context.Context, now time.Time) (bool, error) {
	var one int
	err := s.read.QueryRowContext(ctx, `SELECT 1 FROM tasks`+s.waitingIndex()+` WHERE state = 'pending' AND due_time > $1 LIMIT 1`, s.time(now)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, s.e.MapError(err, "look for waiting tasks")
	}
	return true, nil
}

// WaitingNear implements dispatch.Store from the tasks_waiting index (due time and pickup of PENDING
// tasks), which holds the pickups the filter reads: only the rows inside box are read, and of those only
// the first limit have their documents read (for the size and the exclusions). A limit above MaxLimit is
// lowered to it; a limit below 1 is an error.
func (s *Store) WaitingNear(ctx context.Context, now time.Time, box geo.Box, limit int) ([]dispatch.WaitingTask, error) {
	limit, err := database.RowLimit(limit, MaxLimit)
	if err != nil {
		return nil, err
	}
	if !box.Valid() {
		return nil, apperr.Errorf(apperr.Invalid, "invalid box %+v", box)
	}
	lng := `pickup_lng BETWEEN $4 AND $5`
	if box.West > box.East {
		lng = `(pickup_lng >= $4 OR pickup_lng <= $5)`
	}
	// The state is a literal, as in the index's predicate: a parameter would not match it.
	rows, err := s.read.QueryContext(ctx, `SELECT id, pickup_lat, pickup_lng, doc FROM tasks`+s.waitingIndex()+`
		WHERE state = 'pending' AND due_time > $1 AND pickup_lat BETWEEN $2 AND $3 AND `+lng+`
		ORDER BY priority_rank DESC, create_time, id LIMIT $6`,
		s.time(now), box.South, box.North, box.West, box.East, limit)
	if err != nil {
		return nil, s.e.MapError(err, "load waiting tasks near a courier")
	}
	defer rows.Close()
	var out []dispatch.WaitingTask
	for rows.Next() {
		var (
			w   dispatch.WaitingTask
			doc []byte
		)
		if err := rows.Scan(&w.ID, &w.Pickup.Lat, &w.Pickup.Lng, &doc); err != nil {
			return nil, s.e.MapError(err, "load waiting tasks near a courier")
		}
		t, err := s.decodeTask(doc)
		if err != nil {
			return nil, err
		}
		w.Size = t.Size
		for _, x := range t.Excluded {
			w.Excluded = append(w.Excluded, x.CourierID)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, s.e.MapError(err, "load waiting tasks near a courier")
	}
	return out, nil
}

// waitingIndex follows the tasks table in AnyWaiting and WaitingNear: on SQLite it names tasks_waiting,
// which the planner, without statistics, passes over for tasks_state_list (every pending task, due now or
// later, read row by row).
func (s *Store) waitingIndex() string {
	if s.e.Dialect == database.SQLite {
		return " INDEXED BY tasks_waiting"
	}
	return ""
}

// wakeWaiting makes the PENDING tasks due after now that also match cond ("" for all of them) due now,
// in tx: the one statement of WakePending, WakeNext and WakeTasks. cond may use $1 (now) and $2 (the
// pending state); its own arguments, args, are $3 on.
func (s *Store) wakeWaiting(ctx context.Context, tx *sql.Tx, now time.Time, what, cond string, args ...any) error {
	q := `UPDATE tasks SET due_time = $1 WHERE state = $2 AND due_time > $1`
	if cond != "" {
		q += ` AND ` + cond
	}
	if _, err := tx.ExecContext(ctx, q, append([]any{s.time(now), string(dispatch.StatePending)}, args...)...); err != nil {
		return s.e.MapError(err, what)
	}
	return nil
}

// HeldTasks implements dispatch.Store (ties broken by id).
func (s *Store) HeldTasks(ctx context.Context, courierID string) ([]dispatch.Task, error) {
	held, states := heldStates(2)
	out, err := s.queryTasks(ctx, s.read, `SELECT `+taskColumns+` FROM tasks WHERE courier_id = $1 AND `+held,
		"load tasks held by courier "+courierID, append([]any{courierID}, states...)...)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b dispatch.Task) int {
		return cmp.Or(a.AssignTime.Compare(b.AssignTime), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// HeldTasksOf implements dispatch.Store as the held part of courierStates: one query of the columns
// (each courier's tasks ordered as HeldTasks orders them), decoding only the fields it promises, and only
// of the tasks whose version it has not decoded before (heldTasks).
func (s *Store) HeldTasksOf(ctx context.Context, courierIDs []string) (map[string][]dispatch.Task, error) {
	st, err := s.courierStates(ctx, nil, 0, time.Time{}, courierIDs)
	return st.Held, err
}

// OfferedTasks implements dispatch.Store (ties broken by task id).
func (s *Store) OfferedTasks(ctx context.Context, courierID string) ([]dispatch.Task, error) {
	out, err := s.queryTasks(ctx, s.read, `SELECT `+taskColumns+` FROM tasks WHERE offer_courier_id = $1 AND state = $2`,
		"load tasks offered to courier "+courierID, courierID, string(dispatch.StateOffered))
	if err != nil {
		return nil, err
	}
	offered := func(t *dispatch.Task) time.Time {
		if o := t.CurrentOffer(); o != nil {
			return o.CreateTime
		}
		return time.Time{}
	}
	slices.SortFunc(out, func(a, b dispatch.Task) int {
		return cmp.Or(offered(&a).Compare(offered(&b)), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// CouriersWithWork implements dispatch.Store: two reads, each of one index in id order (the couriers of
// open offers; the holders of ASSIGNED tasks), each at most limit distinct ids, merged. Every id up to
// the limit-th of the merge is in it: each read stops only past its own limit-th id, which is at or after
// the merge's. A limit above MaxLimit is lowered to it; a limit below 1 is an error.
func (s *Store) CouriersWithWork(ctx context.Context, after string, limit int) ([]string, error) {
	limit, err := database.RowLimit(limit, MaxLimit)
	if err != nil {
		return nil, err
	}
	read := func(query string, args ...any) ([]string, error) {
		rows, err := s.read.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, s.e.MapError(err, "list the couriers with work")
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return nil, s.e.MapError(err, "list the couriers with work")
			}
			out = append(out, id)
		}
		if err := rows.Err(); err != nil {
			return nil, s.e.MapError(err, "list the couriers with work")
		}
		return out, nil
	}
	// offer_courier_id is set exactly while a task is OFFERED with an open offer to that courier.
	offers, err := read(`SELECT DISTINCT offer_courier_id FROM tasks`+s.offerIndex()+`
		WHERE offer_courier_id IS NOT NULL AND offer_courier_id > $1 ORDER BY offer_courier_id LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	held, err := read(`SELECT DISTINCT courier_id FROM tasks WHERE courier_id IS NOT NULL AND courier_id > $1 AND state = $2
		ORDER BY courier_id LIMIT $3`, after, string(dispatch.StateAssigned), limit)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, min(limit, len(offers)+len(held)))
	for len(out) < limit && (len(offers) > 0 || len(held) > 0) {
		var next string
		switch {
		case len(held) == 0 || len(offers) > 0 && offers[0] <= held[0]:
			next, offers = offers[0], offers[1:]
		default:
			next, held = held[0], held[1:]
		}
		if len(out) == 0 || out[len(out)-1] != next {
			out = append(out, next)
		}
	}
	return out, nil
}

// OfferOpen implements dispatch.Store as the open-offer part of courierStates: only couriers with an open
// offer are in the map.
func (s *Store) OfferOpen(ctx context.Context, courierIDs []string) (map[string]bool, error) {
	st, err := s.courierStates(ctx, courierIDs, partOfferOpen, time.Time{}, nil)
	return st.OfferOpen, err
}
