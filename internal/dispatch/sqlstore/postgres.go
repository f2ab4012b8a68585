package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/eventlog/sqllog"
)

// createTaskPostgres is CreateTask's statement on PostgreSQL for a task without offers: the insert, the
// count of the customer's open tasks under its cap ($17, countOpenTask's) and the event in one statement
// (sqllog.AppendWithPostgres), outside a transaction. The count reads the insert's row, so a request
// made before counts nothing.
var createTaskPostgres = sqllog.AppendWithPostgres(`
	INSERT INTO tasks (id, state, customer_id, courier_id, offer_courier_id, priority_rank, create_time,
		update_time, due_time, created_by, request_id, version, doc, pickup_lat, pickup_lng)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $18, $19)
	ON CONFLICT (created_by, request_id) DO NOTHING
	RETURNING id, customer_id`, "$14::text", "id", "$15::bytea", "$16::timestamptz", `
	INSERT INTO customer_open_tasks (customer_id, open_tasks, max_open) SELECT customer_id, 1, $17::bigint FROM written
	ON CONFLICT (customer_id) DO UPDATE SET open_tasks = customer_open_tasks.open_tasks + 1, max_open = EXCLUDED.max_open
	RETURNING 1`)

// createPostgres is CreateTask on PostgreSQL for t, stored and encoded as doc, when it has no offers
// (every task a customer creates): one round trip instead of five (BEGIN, the insert, the count, the
// append, COMMIT), and the event log's lock held for the statement's own commit only. A request made
// before inserts, counts and appends nothing (ON CONFLICT DO NOTHING waits for a conflicting insert in
// flight); its task is read after, committed. One over maxOpen fails the count's check, and with it
// the whole statement: dispatch.ErrTooManyOpenTasks.
func (s *Store) createPostgres(ctx context.Context, t dispatch.Task, doc string, maxOpen int64) (dispatch.Task, bool, error) {
	at := storedTime(time.Now())
	err := s.retrying(ctx, func() error {
		var seq int64
		return s.db.QueryRowContext(ctx, createTaskPostgres,
			t.ID, string(t.State), t.CustomerID, nullString(t.CourierID), nil, t.Priority.Rank(),
			s.time(t.CreateTime), s.time(t.UpdateTime), s.nullTime(t.DueTime), t.CreatedBy, nullString(t.RequestID),
			t.Version, doc, dispatch.TopicTask, []byte(t.State), at, maxOpen, t.Pickup.Location.Lat, t.Pickup.Location.Lng).Scan(&seq)
	})
	if errors.Is(err, sql.ErrNoRows) {
		// The request was made before: answer with its task.
		prev, err := s.scanTask(s.db.QueryRowContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE created_by = $1 AND request_id = $2`,
			t.CreatedBy, t.RequestID))
		if err != nil {
			return dispatch.Task{}, false, s.e.MapError(err, "load task of request "+t.RequestID+" by "+t.CreatedBy)
		}
		return prev, false, nil
	}
	if err != nil {
		return dispatch.Task{}, false, s.capError(err, "insert task "+t.ID)
	}
	s.afterAppend()
	s.docs.put(doc, t)
	return t, true, nil
}

// pgWrites are the writes of a batch's changes (UpdateTasks) on PostgreSQL, made by three statements
// whatever their number (flush) instead of three round trips per task: the tasks' rows, their new
// offers, their decisions.
type pgWrites struct {
	// The tasks' new rows, and the version each replaces.
	ids, states, customers, docs          []string
	couriers, offerCouriers               []*string
	ranks                                 []int32
	updateTimes                           []time.Time
	dueTimes                              []*time.Time
	versions, oldVersions                 []int64
	offerIDs, offerTasks, offerCouriersOf []string
	// The tasks' former holders (formerHolder).
	formerCouriers, formerTasks []string
	// The decisions as stored (decisionToStore) and their stored forms.
	decisions      []dispatch.Decision
	decisionStored []storedDecision
	// The tasks whose decisions are pruned after (dispatch.Change.KeepDecisions), and how many each keeps.
	pruneTasks []string
	pruneKeep  []int32
}

// add queues the writes of p, a change without a command or jobs (prepareChange): what writePrepared
// writes for it.
func (w *pgWrites) add(p *preparedChange) error {
	cur, next := p.cur, p.next
	w.ids, w.states, w.customers, w.docs = append(w.ids, next.ID), append(w.states, string(next.State)), append(w.customers, next.CustomerID), append(w.docs, p.doc)
	w.couriers, w.offerCouriers = append(w.couriers, optional(next.CourierID)), append(w.offerCouriers, optional(offerCourier(&next)))
	w.ranks, w.updateTimes = append(w.ranks, int32(next.Priority.Rank())), append(w.updateTimes, storedTime(next.UpdateTime))
	var due *time.Time
	if !next.DueTime.IsZero() {
		d := storedTime(next.DueTime)
		due = &d
	}
	w.dueTimes, w.versions, w.oldVersions = append(w.dueTimes, due), append(w.versions, next.Version), append(w.oldVersions, cur.Version)
	offers, err := newOffers(next.ID, cur.Offers, next.Offers)
	if err != nil {
		return err
	}
	for _, o := range offers {
		w.offerIDs, w.offerTasks, w.offerCouriersOf = append(w.offerIDs, o.ID), append(w.offerTasks, next.ID), append(w.offerCouriersOf, o.CourierID)
	}
	if c := formerHolder(cur, next); c != "" {
		w.formerCouriers, w.formerTasks = append(w.formerCouriers, c), append(w.formerTasks, next.ID)
	}
	if p.ch.Decision == nil {
		return nil
	}
	if p.decisionErr != nil {
		return p.decisionErr
	}
	w.decisions, w.decisionStored = append(w.decisions, p.decision), append(w.decisionStored, p.decisionStored)
	if keep := p.ch.KeepDecisions; keep > 0 && !slices.Contains(w.pruneTasks, next.ID) {
		w.pruneTasks, w.pruneKeep = append(w.pruneTasks, next.ID), append(w.pruneKeep, int32(min(keep, math.MaxInt32)))
	}
	return nil
}

// optional is v, nil for "" (NULL).
func optional(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

// flush writes what add queued, in tx: Aborted when a task's stored version is no longer the one read,
// as writeTask.
func (w *pgWrites) flush(ctx context.Context, s *Store, tx *sql.Tx) error {
	if len(w.ids) == 0 {
		return nil
	}
	res, err := tx.ExecContext(ctx, `
		UPDATE tasks t SET state = u.state, customer_id = u.customer_id, courier_id = u.courier_id,
			offer_courier_id = u.offer_courier_id, priority_rank = u.priority_rank, update_time = u.update_time,
			due_time = u.due_time, version = u.version, doc = u.doc::json
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::timestamptz[],
			$8::timestamptz[], $9::bigint[], $10::text[], $11::bigint[])
			AS u(id, state, customer_id, courier_id, offer_courier_id, priority_rank, update_time, due_time, version, doc, old_version)
		WHERE t.id = u.id AND t.version = u.old_version`,
		w.ids, w.states, w.customers, w.couriers, w.offerCouriers, w.ranks, w.updateTimes, w.dueTimes, w.versions, w.docs, w.oldVersions)
	if err != nil {
		return s.e.MapError(err, fmt.Sprintf("update %d tasks", len(w.ids)))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.e.MapError(err, fmt.Sprintf("update %d tasks", len(w.ids)))
	}
	if n != int64(len(w.ids)) {
		return apperr.Errorf(apperr.Aborted, "%d of %d tasks changed while they were being updated", int64(len(w.ids))-n, len(w.ids))
	}
	if len(w.offerIDs) > 0 {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO offers (offer_id, task_id, courier_id) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
			ON CONFLICT (offer_id) DO NOTHING`, w.offerIDs, w.offerTasks, w.offerCouriersOf)
		if err != nil {
			return s.e.MapError(err, fmt.Sprintf("record %d offers", len(w.offerIDs)))
		}
	}
	if len(w.formerCouriers) > 0 {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO former_holders (courier_id, task_id) SELECT * FROM unnest($1::text[], $2::text[])
			ON CONFLICT DO NOTHING`, w.formerCouriers, w.formerTasks)
		if err != nil {
			return s.e.MapError(err, fmt.Sprintf("record %d former holders", len(w.formerCouriers)))
		}
	}
	if len(w.decisions) == 0 {
		return nil
	}
	nd := len(w.decisions)
	ids, tasks, times, docs, bins := make([]string, nd), make([]string, nd), make([]time.Time, nd), make([]string, nd), make([][]byte, nd)
	for i, d := range w.decisions {
		ids[i], tasks[i], times[i], docs[i], bins[i] = d.ID, d.TaskID, d.DecideTime, w.decisionStored[i].doc, w.decisionStored[i].bin
	}
	if len(slices.Compact(slices.Sorted(slices.Values(ids)))) != len(ids) {
		// One decision twice: an upsert each, in order (one statement cannot change a row twice).
		for i, d := range w.decisions {
			if err := s.insertDecision(ctx, tx, d.TaskID, d, w.decisionStored[i]); err != nil {
				return err
			}
		}
	} else {
		_, err = tx.ExecContext(ctx, `
			INSERT INTO decisions (id, task_id, decide_time, doc, bin)
			SELECT u.id, u.task_id, u.decide_time, u.doc::json, u.bin
			FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::bytea[]) AS u(id, task_id, decide_time, doc, bin)
			ON CONFLICT (id) DO UPDATE SET decide_time = excluded.decide_time, doc = excluded.doc, bin = excluded.bin`,
			ids, tasks, times, docs, bins)
		if err != nil {
			return s.e.MapError(err, fmt.Sprintf("record %d decisions", len(ids)))
		}
	}
	if len(w.pruneTasks) == 0 {
		return nil
	}
	_, err = tx.ExecContext(ctx, `
		DELETE FROM decisions WHERE id IN (
			SELECT r.id FROM (
				SELECT d.id, u.keep, row_number() OVER (PARTITION BY d.task_id ORDER BY d.decide_time DESC, d.id DESC) AS n
				FROM decisions d JOIN unnest($1::text[], $2::int[]) AS u(task_id, keep) ON d.task_id = u.task_id) r
			WHERE r.n > r.keep)`, w.pruneTasks, w.pruneKeep)
	if err != nil {
		return s.e.MapError(err, fmt.Sprintf("prune the decisions of %d tasks", len(w.pruneTasks)))
	}
	return nil
}

// queueChange is applyChange for a change without a command or jobs, its writes queued in w (written by
// w.flush) instead of made at once.
func (s *Store) queueChange(w *pgWrites, cur dispatch.Task, ch dispatch.Change) (dispatch.Task, string, error) {
	p, err := s.prepareChange(cur, ch)
	if err != nil {
		return dispatch.Task{}, "", err
	}
	if err := w.add(p); err != nil {
		return dispatch.Task{}, "", err
	}
	return p.next, p.doc, nil
}

// updateTaskPostgres is the task's UPDATE (writeTask's) for writeChangePostgres.
const updateTaskPostgres = `
	UPDATE tasks SET state = $1, customer_id = $2, courier_id = $3, offer_courier_id = $4, priority_rank = $5,
		update_time = $6, due_time = $7, version = $8, doc = $9
	WHERE id = $10 AND version = $11
	RETURNING id`

// Statements of writeChangePostgres: the task's row and its event, with and without the command's
// record (insertCommand's) between them.
var (
	changePostgres  = sqllog.AppendWithPostgres(updateTaskPostgres, "$12::text", "id", "$13::bytea", "$14::timestamptz")
	commandPostgres = sqllog.AppendWithPostgres(updateTaskPostgres, "$12::text", "id", "$13::bytea", "$14::timestamptz", `
		INSERT INTO commands (courier_id, command_id, fingerprint, task_id, error, create_time)
		SELECT $15, $16, $17, $18, $19, $20 FROM written RETURNING 1`)
)

// onePostgresStatement reports whether writeChangePostgres can write ch, a closure's change of cur: no
// decision, no deliveries, not quiet, no new offer, no former holder (an accept or a decline, a courier's
// command; not a hand-back).
func onePostgresStatement(cur dispatch.Task, ch dispatch.Change) bool {
	if ch.Decision != nil || len(ch.Deliveries) > 0 || ch.Quiet || formerHolder(cur, ch.Task) != "" {
		return false
	}
	offers, err := newOffers(cur.ID, cur.Offers, ch.Task.Offers)
	return err == nil && len(offers) == 0 // an invalid offer goes the usual way, which answers it
}

// writeChangePostgres is applyChange and appendChange on PostgreSQL for a change onePostgresStatement
// accepts: the jobs first (River's insert), then the task's row, the command's record and the task's
// event in one statement (sqllog.AppendWithPostgres), two round trips fewer than a statement each. The
// same rows, locks and event; the log's lock is still taken last.
func (s *Store) writeChangePostgres(ctx context.Context, tx *sql.Tx, a *appender, cur dispatch.Task, ch dispatch.Change) (dispatch.Task, string, error) {
	id := cur.ID
	p, err := s.prepareChange(cur, ch)
	if err != nil {
		return dispatch.Task{}, "", err
	}
	next, doc := p.next, p.doc
	args := []any{string(next.State), next.CustomerID, nullString(next.CourierID), nullString(offerCourier(&next)), next.Priority.Rank(),
		s.time(next.UpdateTime), s.nullTime(next.DueTime), next.Version, doc, id, cur.Version,
		dispatch.TopicTask, []byte(next.State), storedTime(time.Now())}
	stmt := changePostgres
	if rec := ch.Command; rec != nil {
		row, err := s.commandRow(*rec, next.UpdateTime)
		if err != nil {
			return dispatch.Task{}, "", err
		}
		stmt = commandPostgres
		args = append(args, row...)
	}
	if len(ch.Jobs) > 0 {
		if err := s.jobs(ctx, tx, ch.Jobs); err != nil {
			return dispatch.Task{}, "", s.e.MapError(err, fmt.Sprintf("enqueue %d jobs of task %s", len(ch.Jobs), id))
		}
	}
	var seq int64
	err = tx.QueryRowContext(ctx, stmt, args...).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return dispatch.Task{}, "", apperr.Errorf(apperr.Aborted, "task %s changed while it was being updated", id)
	}
	if err != nil {
		return dispatch.Task{}, "", s.e.MapError(err, "update task "+id)
	}
	a.appended = true
	return next, doc, nil
}
