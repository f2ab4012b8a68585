package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
)

// appender appends events in one transaction and remembers that it did, so that the Store nudges the
// log after the commit.
type appender struct {
	s        *Store
	appended bool
}

// append records an event in tx and returns its sequence number.
func (a *appender) append(ctx context.Context, tx *sql.Tx, topic, key string, payload []byte) (int64, error) {
	seq, err := sqllog.Append(ctx, tx, a.s.e.Dialect, eventlog.Event{Topic: topic, Key: key, Payload: payload})
	if err != nil {
		return 0, a.s.e.MapError(err, "append "+topic+" event for "+key)
	}
	a.appended = true
	return seq, nil
}

// normalizeTask returns t with every time as the store keeps it (UTC, whole microseconds), so that
// what UpdateTask returns is exactly what a later read returns.
func normalizeTask(t dispatch.Task) dispatch.Task {
	t = t.Clone()
	for _, p := range []*dispatch.Stop{&t.Pickup, &t.Dropoff} {
		if p.Window != nil {
			p.Window.Start, p.Window.End = storedTime(p.Window.Start), storedTime(p.Window.End)
		}
	}
	for i := range t.Offers {
		o := &t.Offers[i]
		o.CreateTime, o.ExpireTime, o.AnswerTime = storedTime(o.CreateTime), storedTime(o.ExpireTime), storedTime(o.AnswerTime)
	}
	for i := range t.Proofs {
		p := &t.Proofs[i]
		p.CaptureTime, p.CreateTime = storedTime(p.CaptureTime), storedTime(p.CreateTime)
	}
	for i := range t.History {
		t.History[i].At = storedTime(t.History[i].At)
	}
	for _, p := range []*time.Time{&t.CreateTime, &t.UpdateTime, &t.AssignTime, &t.PickupTime, &t.DeliverTime,
		&t.FinishTime, &t.DueTime, &t.SearchStart} {
		*p = storedTime(*p)
	}
	return t
}

// normalizeDecision returns d with its time as the store keeps it.
func normalizeDecision(d dispatch.Decision) dispatch.Decision {
	d.DecideTime = storedTime(d.DecideTime)
	d.Candidates = append([]dispatch.Candidate(nil), d.Candidates...)
	for i := range d.Candidates {
		if sc := d.Candidates[i].Score; sc != nil {
			c := *sc
			d.Candidates[i].Score = &c
		}
	}
	return d
}

// encode marshals v for a doc column. A value JSON cannot hold (a NaN score, say) is Invalid.
func encode(v any, what string) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", apperr.Wrap(apperr.Invalid, fmt.Errorf("encode %s: %w", what, err), "value cannot be stored")
	}
	return string(b), nil
}

// decode unmarshals a doc column into v.
func decode(doc []byte, v any, what string) error {
	if err := json.Unmarshal(doc, v); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return nil
}
