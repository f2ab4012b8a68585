package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

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
