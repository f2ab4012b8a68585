package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// insertDelivery appends d's event, whose sequence number is its cursor, and records d. A delivery
// without a CreateTime gets fallback, or the wall clock when that is zero too.
func (s *Store) insertDelivery(ctx context.Context, tx *sql.Tx, a *appender, d dispatch.Delivery, fallback time.Time) error {
	d, err := deliveryToStore(d, fallback)
	if err != nil {
		return err
	}
	cursor, err := a.append(ctx, tx, dispatch.TopicDelivery, d.CourierID, []byte(d.TaskID))
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `
		INSERT INTO deliveries (courier_id, cursor, kind, task_id, offer_id, reason, create_time)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		d.CourierID, cursor, string(d.Kind), d.TaskID, d.OfferID, string(d.Reason), s.time(d.CreateTime))
	if err != nil {
		return s.e.MapError(err, "record delivery to courier "+d.CourierID)
	}
	return nil
}

// deliveryToStore checks that d names a courier and a task, and gives it a CreateTime when it has none:
// fallback, or the wall clock when that is zero too.
func deliveryToStore(d dispatch.Delivery, fallback time.Time) (dispatch.Delivery, error) {
	if d.CourierID == "" || d.TaskID == "" {
		return d, apperr.Errorf(apperr.Internal, "delivery without a courier or a task")
	}
	if d.CreateTime.IsZero() {
		d.CreateTime = fallback
	}
	if d.CreateTime.IsZero() {
		d.CreateTime = time.Now()
	}
	return d, nil
}

// Deliveries implements dispatch.Store. A limit above MaxLimit is lowered to it; a limit below 1 is
// Invalid.
func (s *Store) Deliveries(ctx context.Context, courierID string, after int64, limit int) ([]dispatch.Delivery, error) {
	limit, err := database.RowLimit(limit, MaxLimit)
	if err != nil {
		return nil, err
	}
	rows, err := s.read.QueryContext(ctx, `
		SELECT courier_id, cursor, kind, task_id, offer_id, reason, create_time FROM deliveries
		WHERE courier_id = $1 AND cursor > $2 ORDER BY cursor LIMIT $3`, courierID, after, limit)
	if err != nil {
		return nil, s.e.MapError(err, "load deliveries of courier "+courierID)
	}
	out, err := collect(rows, func(r scanner) (dispatch.Delivery, error) {
		var d dispatch.Delivery
		err := r.Scan(&d.CourierID, &d.Cursor, &d.Kind, &d.TaskID, &d.OfferID, &d.Reason, database.ScanTime(&d.CreateTime))
		return d, err
	})
	if err != nil {
		return nil, s.e.MapError(err, "load deliveries of courier "+courierID)
	}
	return out, nil
}

// DeliveriesWithTasks implements dispatch.Store: the deliveries left-joined with their tasks, each task
// read as scanTask reads it. The doc of an offer delivery's task is left unread (NULL) unless the task is
// offered to the delivery's courier (offer_courier_id, set while its current offer is open): such a
// delivery is Superseded. A limit above MaxLimit is lowered to it; a limit below 1 is Invalid.
func (s *Store) DeliveriesWithTasks(ctx context.Context, courierID string, after int64, limit int) ([]dispatch.DeliveryWithTask, error) {
	limit, err := database.RowLimit(limit, MaxLimit)
	if err != nil {
		return nil, err
	}
	rows, err := s.read.QueryContext(ctx, `
		SELECT d.courier_id, d.cursor, d.kind, d.task_id, d.offer_id, d.reason, d.create_time,
			t.version, t.due_time,
			CASE WHEN d.kind <> 'offer' OR t.offer_courier_id = d.courier_id THEN t.doc END
		FROM deliveries d LEFT JOIN tasks t ON t.id = d.task_id
		WHERE d.courier_id = $1 AND d.cursor > $2 ORDER BY d.cursor LIMIT $3`, courierID, after, limit)
	if err != nil {
		return nil, s.e.MapError(err, "load deliveries of courier "+courierID)
	}
	out, err := collect(rows, func(r scanner) (dispatch.DeliveryWithTask, error) {
		var (
			dt      dispatch.DeliveryWithTask
			d       = &dt.Delivery
			version sql.NullInt64
			due     time.Time
			doc     []byte
		)
		err := r.Scan(&d.CourierID, &d.Cursor, &d.Kind, &d.TaskID, &d.OfferID, &d.Reason, database.ScanTime(&d.CreateTime),
			&version, database.ScanTime(&due), &doc)
		if err != nil || !version.Valid {
			return dt, err
		}
		if doc == nil {
			dt.Superseded = true
			return dt, nil
		}
		dt.Task, err = s.taskOf(version.Int64, due, doc)
		dt.Found = err == nil
		return dt, err
	})
	if err != nil {
		return nil, s.e.MapError(err, "load deliveries of courier "+courierID)
	}
	return out, nil
}

// LastCursor implements dispatch.Store. Deliveries that Purge deleted still count when the courier
// acknowledged them: the answer is the highest of the kept deliveries' cursors and the session's
// acknowledgement watermark.
func (s *Store) LastCursor(ctx context.Context, courierID string) (int64, error) {
	var last int64
	err := s.read.QueryRowContext(ctx, `
		SELECT max(c) FROM (
			SELECT coalesce(max(cursor), 0) AS c FROM deliveries WHERE courier_id = $1
			UNION ALL
			SELECT coalesce(max(acked), 0) FROM sessions WHERE courier_id = $1
		) x`, courierID).Scan(&last)
	if err != nil {
		return 0, s.e.MapError(err, "read last cursor of courier "+courierID)
	}
	return last, nil
}

const sessionColumns = `courier_id, session_id, epoch, acked, replica, heartbeat, is_open, app_version, capabilities`

func scanSession(r scanner) (dispatch.Session, error) {
	var (
		ss   dispatch.Session
		caps []byte
	)
	if err := r.Scan(&ss.CourierID, &ss.SessionID, &ss.Epoch, &ss.Acked, &ss.Replica, database.ScanTime(&ss.Heartbeat),
		&ss.Open, &ss.AppVersion, &caps); err != nil {
		return dispatch.Session{}, err
	}
	if err := decode(caps, &ss.Capabilities, "session capabilities"); err != nil {
		return dispatch.Session{}, err
	}
	return ss, nil
}

// GetSession implements dispatch.Store.
func (s *Store) GetSession(ctx context.Context, courierID string) (dispatch.Session, error) {
	ss, err := scanSession(s.read.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE courier_id = $1`, courierID))
	if errors.Is(err, sql.ErrNoRows) {
		return dispatch.Session{CourierID: courierID}, nil
	}
	if err != nil {
		return dispatch.Session{}, s.e.MapError(err, "load session of courier "+courierID)
	}
	return ss, nil
}

// UpdateSession implements dispatch.Store. The record is created (all zero) before it is locked, so two
// first sessions of one courier take turns like any others; when fn fails the transaction, creation
// included, is rolled back. What fn returns keeps courierID, and its heartbeat is stored to the
// microsecond in UTC.
func (s *Store) UpdateSession(ctx context.Context, courierID string, fn func(dispatch.Session) (dispatch.Session, error)) (dispatch.Session, error) {
	var out dispatch.Session
	err := s.inTxIndexed(ctx, func(tx *sql.Tx, a *appender) (w indexWrite, _ error) {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO sessions (courier_id, session_id, epoch, acked, replica, heartbeat, is_open, app_version, capabilities)
			VALUES ($1, '', 0, 0, '', NULL, $2, '', $3)
			ON CONFLICT (courier_id) DO NOTHING`, courierID, false, "[]")
		if err != nil {
			return w, s.e.MapError(err, "create session of courier "+courierID)
		}
		cur, err := scanSession(tx.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE courier_id = $1`+s.e.Lock, courierID))
		if err != nil {
			return w, s.e.MapError(err, "lock session of courier "+courierID)
		}
		next, err := fn(cur)
		if err != nil {
			return w, err
		}
		next.CourierID = courierID
		next.Heartbeat = storedTime(next.Heartbeat)
		next.Capabilities = append([]string(nil), next.Capabilities...)
		caps, err := encode(next.Capabilities, "session capabilities")
		if err != nil {
			return w, err
		}
		if next.Capabilities == nil {
			caps = "[]"
		}
		_, err = tx.ExecContext(ctx, `
			UPDATE sessions SET session_id = $1, epoch = $2, acked = $3, replica = $4, heartbeat = $5, is_open = $6,
				app_version = $7, capabilities = $8
			WHERE courier_id = $9`,
			next.SessionID, next.Epoch, next.Acked, next.Replica, s.nullTime(next.Heartbeat), next.Open, next.AppVersion, caps, courierID)
		if err != nil {
			return w, s.e.MapError(err, "update session of courier "+courierID)
		}
		if next.SessionID != cur.SessionID {
			if _, err := a.append(ctx, tx, dispatch.TopicSession, courierID, []byte(next.SessionID)); err != nil {
				return w, err
			}
		}
		out = next
		w.addSession(courierID, next.Open, next.Heartbeat)
		return w, nil
	})
	if err != nil {
		return dispatch.Session{}, err
	}
	return out, nil
}

// AckSession implements dispatch.Store: one UPDATE, atomic without a transaction (on SQLite it shares
// a group's commit, see write).
func (s *Store) AckSession(ctx context.Context, courierID string, cursor int64) error {
	return s.write(ctx, func(q querier) error {
		res, err := q.ExecContext(ctx, `
			UPDATE sessions SET acked = CASE WHEN acked < $1 THEN $1 ELSE acked END WHERE courier_id = $2`, cursor, courierID)
		if err != nil {
			return s.e.MapError(err, fmt.Sprintf("acknowledge cursor %d of courier %s", cursor, courierID))
		}
		n, err := res.RowsAffected()
		if err != nil {
			return s.e.MapError(err, fmt.Sprintf("acknowledge cursor %d of courier %s", cursor, courierID))
		}
		if n == 0 {
			return apperr.Errorf(apperr.NotFound, "no session record of courier %s", courierID)
		}
		return nil
	})
}

// beatChunk bounds the sessions of one BeatSessions statement: three parameters each, below SQLite's
// oldest limit of 999 parameters per statement.
const beatChunk = 300

// BeatSessions implements dispatch.Store. The courier ids narrow the update through the primary key; the
// pairs decide. On SQLite the statements share a group's commit (see write).
func (s *Store) BeatSessions(ctx context.Context, sessions []dispatch.SessionRef, at time.Time) (map[dispatch.SessionRef]int64, error) {
	var out map[dispatch.SessionRef]int64
	err := s.writeIndexed(ctx, func(q querier) (w indexWrite, _ error) {
		out = map[dispatch.SessionRef]int64{} // a run again starts afresh
		for chunk := range slices.Chunk(sessions, beatChunk) {
			if err := s.beatSessions(ctx, q, chunk, at, out); err != nil {
				return w, err
			}
		}
		// A session refreshed was open (the statement's condition): open, with the new heartbeat.
		for ref := range out {
			w.sessions = append(w.sessions, indexedSessionWrite{courierID: ref.CourierID, open: true, heartbeat: at.UnixMicro()})
		}
		return w, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// beatSessions is BeatSessions for one chunk, adding what it refreshed to out.
func (s *Store) beatSessions(ctx context.Context, q querier, chunk []dispatch.SessionRef, at time.Time, out map[dispatch.SessionRef]int64) error {
	n := len(chunk)
	args := make([]any, 0, 2+3*n)
	args = append(args, s.time(at), true)
	for _, r := range chunk {
		args = append(args, r.CourierID)
	}
	var pairs strings.Builder
	for i, r := range chunk {
		if i > 0 {
			pairs.WriteString(", ")
		}
		fmt.Fprintf(&pairs, "($%d, $%d)", len(args)+1, len(args)+2)
		args = append(args, r.CourierID, r.SessionID)
	}
	rows, err := q.QueryContext(ctx, `
		UPDATE sessions SET heartbeat = $1
		WHERE is_open = $2 AND courier_id IN (`+placeholders(3, n)+`) AND (courier_id, session_id) IN (VALUES `+pairs.String()+`)
		RETURNING courier_id, session_id,
			(SELECT coalesce(max(d.cursor), 0) FROM deliveries d WHERE d.courier_id = sessions.courier_id)`, args...)
	if err != nil {
		return s.e.MapError(err, "refresh session heartbeats")
	}
	type beaten struct {
		ref  dispatch.SessionRef
		last int64
	}
	got, err := collect(rows, func(r scanner) (beaten, error) {
		var b beaten
		err := r.Scan(&b.ref.CourierID, &b.ref.SessionID, &b.last)
		return b, err
	})
	if err != nil {
		return s.e.MapError(err, "refresh session heartbeats")
	}
	for _, b := range got {
		out[b.ref] = b.last
	}
	return nil
}

// Connected implements dispatch.Store as the connected part of courierStates: only connected couriers are
// in the map.
func (s *Store) Connected(ctx context.Context, courierIDs []string, since time.Time) (map[string]bool, error) {
	st, err := s.courierStates(ctx, courierIDs, partConnected, since, nil)
	return st.Connected, err
}

// Command implements dispatch.Store.
func (s *Store) Command(ctx context.Context, courierID, commandID string) (dispatch.CommandRecord, bool, error) {
	var (
		rec    = dispatch.CommandRecord{CourierID: courierID, CommandID: commandID}
		errDoc []byte
	)
	err := s.read.QueryRowContext(ctx, `
		SELECT fingerprint, task_id, error, create_time FROM commands WHERE courier_id = $1 AND command_id = $2`,
		courierID, commandID).Scan(&rec.Fingerprint, &rec.TaskID, &errDoc, database.ScanTime(&rec.CreateTime))
	if errors.Is(err, sql.ErrNoRows) {
		return dispatch.CommandRecord{}, false, nil
	}
	if err != nil {
		return dispatch.CommandRecord{}, false, s.e.MapError(err, fmt.Sprintf("load command %s of courier %s", commandID, courierID))
	}
	if errDoc != nil {
		rec.Err = &dispatch.CommandError{}
		if err := decode(errDoc, rec.Err, "command error"); err != nil {
			return dispatch.CommandRecord{}, false, s.e.MapError(err, fmt.Sprintf("load command %s of courier %s", commandID, courierID))
		}
	}
	return rec, true, nil
}

// SaveCommand implements dispatch.Store. A record without a CreateTime gets the wall clock.
func (s *Store) SaveCommand(ctx context.Context, rec dispatch.CommandRecord) error {
	return s.inTx(ctx, func(tx *sql.Tx, _ *appender) error {
		return s.insertCommand(ctx, tx, rec, time.Time{}, true)
	})
}

// insertCommand records rec, whose CreateTime defaults to fallback or else the wall clock. A record with
// the same key is kept when keep is set, and is Conflict otherwise.
func (s *Store) insertCommand(ctx context.Context, tx *sql.Tx, rec dispatch.CommandRecord, fallback time.Time, keep bool) error {
	row, err := s.commandRow(rec, fallback)
	if err != nil {
		return err
	}
	conflict := ""
	if keep {
		conflict = " ON CONFLICT (courier_id, command_id) DO NOTHING"
	}
	_, err = tx.ExecContext(ctx, `
		INSERT INTO commands (courier_id, command_id, fingerprint, task_id, error, create_time)
		VALUES ($1, $2, $3, $4, $5, $6)`+conflict, row...)
	if err != nil {
		return s.e.MapError(err, fmt.Sprintf("record command %s of courier %s", rec.CommandID, rec.CourierID))
	}
	return nil
}

// commandRow is rec's row of commands (courier_id, command_id, fingerprint, task_id, error,
// create_time), its CreateTime defaulting to fallback or else the wall clock.
func (s *Store) commandRow(rec dispatch.CommandRecord, fallback time.Time) ([]any, error) {
	if rec.CourierID == "" || rec.CommandID == "" {
		return nil, apperr.Errorf(apperr.Invalid, "command record without a courier or a command id")
	}
	at := rec.CreateTime
	if at.IsZero() {
		at = fallback
	}
	if at.IsZero() {
		at = time.Now()
	}
	var errDoc any
	if rec.Err != nil {
		doc, err := encode(rec.Err, "command error")
		if err != nil {
			return nil, err
		}
		errDoc = doc
	}
	return []any{rec.CourierID, rec.CommandID, rec.Fingerprint, rec.TaskID, errDoc, s.time(at)}, nil
}

// Purge implements dispatch.Store: it deletes acknowledged deliveries, and deliveries and command
// records created before before, and returns how many rows it deleted. Request ids are kept (see the
// package documentation).
func (s *Store) Purge(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	err := s.inTx(ctx, func(tx *sql.Tx, _ *appender) error {
		total = 0
		// Times compare as stored, to the microsecond.
		bound := s.time(before)
		for _, st := range []struct{ what, query string }{
			{"acknowledged deliveries", `DELETE FROM deliveries WHERE cursor <= (SELECT s.acked FROM sessions s WHERE s.courier_id = deliveries.courier_id)`},
			{"old deliveries", `DELETE FROM deliveries WHERE create_time < $1`},
			{"old command records", `DELETE FROM commands WHERE create_time < $1`},
		} {
			var args []any
			if st.what != "acknowledged deliveries" {
				args = []any{bound}
			}
			res, err := tx.ExecContext(ctx, st.query, args...)
			if err != nil {
				return s.e.MapError(err, "purge "+st.what)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return s.e.MapError(err, "purge "+st.what)
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return total, nil
}
