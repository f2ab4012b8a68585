package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

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

// appendMany records events in tx (sqllog.AppendMany) and returns their sequence numbers, in order.
func (a *appender) appendMany(ctx context.Context, tx *sql.Tx, events []eventlog.Event) ([]int64, error) {
	seqs, err := sqllog.AppendMany(ctx, tx, a.s.e.Dialect, events)
	if err != nil {
		return nil, a.s.e.MapError(err, fmt.Sprintf("append %d events", len(events)))
	}
	if len(events) > 0 {
		a.appended = true
	}
	return seqs, nil
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

// encodeTask is encode for a task's document, written by taskDoc (the same bytes, faster).
func encodeTask(t *dispatch.Task) (string, error) {
	if doc, ok := taskDoc(t); ok {
		return doc, nil
	}
	return encode(t, "task "+t.ID)
}

// storedDecision is a decision's stored form: its binary form (decisionBin) in bin, or, for a decision
// that has none, its JSON document in doc. A row with bin holds noDecisionDoc in doc (the column is NOT
// NULL, and json on PostgreSQL). Rows written before the binary form hold their document, bin NULL.
type storedDecision struct {
	doc string
	bin []byte
}

// noDecisionDoc is the doc of a decision stored in binary form: JSON's null.
const noDecisionDoc = "null"

// binArg is the bin column's argument: NULL for none.
func (sd storedDecision) binArg() any {
	if sd.bin == nil {
		return nil
	}
	return sd.bin
}

// decodeDecision decodes a decision's row: bin when it is not NULL, doc otherwise.
func decodeDecision(doc, bin []byte) (dispatch.Decision, error) {
	if bin != nil {
		d, err := decodeDecisionBin(bin)
		if err != nil {
			return d, fmt.Errorf("decode decision: %w", err)
		}
		return d, nil
	}
	var d dispatch.Decision
	err := decode(doc, &d, "decision")
	return d, err
}

// encodeDecision is encode for a decision's document, written by decisionDoc.
func encodeDecision(d *dispatch.Decision) (string, error) {
	if doc, ok := decisionDoc(d); ok {
		return doc, nil
	}
	return encode(d, "decision "+d.ID)
}

// storable returns Invalid for a document the engine refuses (Engine.RefuseNUL), before it is sent.
func (s *Store) storable(doc, what string) error {
	if s.e.RefuseNUL && hasNULEscape(doc) {
		return apperr.Errorf(apperr.Invalid, "%s: value cannot be stored: a NUL character", what)
	}
	return nil
}

// hasNULEscape reports whether the JSON text doc holds the escape \u0000: a backslash, not itself
// escaped (an even number of backslashes before it), then u0000.
func hasNULEscape(doc string) bool {
	for i := 0; ; {
		j := strings.Index(doc[i:], `\u0000`)
		if j < 0 {
			return false
		}
		j += i
		n := 0
		for k := j - 1; k >= 0 && doc[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return true
		}
		i = j + 1
	}
}

// decode unmarshals a doc column into v.
func decode(doc []byte, v any, what string) error {
	if err := json.Unmarshal(doc, v); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return nil
}

// Task documents decoded before, by their bytes. A task's document is read far more often than it is
// written (the lease, the batch's locked read, the courier's delivery, the accept's locked read, each
// read the version the write before it wrote), and decoding it is most of the cost of those reads. The
// cache is keyed by the document itself, so it needs no invalidation: the same bytes always decode to
// the same task, whichever version, replica or rolled-back transaction they came from. Besides the
// documents decoded, the Store puts the documents it writes, with the task it encoded (after the
// commit): encoding/json decodes what it encoded to an equal value (times are stored UTC to the
// microsecond, empty slices as nil, see dispatch.Task.Stored), except for strings that are not valid
// UTF-8, which the encoder replaces by U+FFFD (written as the escape \ufffd): such documents are not
// put.

// maxTaskDocs bounds the documents of one generation of taskDocs; it keeps at most two.
const maxTaskDocs = 1024

// taskDocs is the task documents decoded (or encoded) before. Safe for concurrent use; the zero value is
// empty. A task in it is never changed: get returns a copy.
type taskDocs struct {
	mu sync.Mutex
	// cur and old are two generations: when cur is full it becomes old, so a document used within
	// the last maxTaskDocs puts stays.
	cur, old map[string]dispatch.Task
}

// get returns a copy of the task doc decodes to, if known.
func (c *taskDocs) get(doc []byte) (dispatch.Task, bool) {
	t, ok := c.find(doc)
	if !ok {
		return dispatch.Task{}, false
	}
	return cloneTask(t), true
}

// held returns the fields of the task doc decodes to that heldDoc holds, if known.
func (c *taskDocs) held(doc []byte) (dispatch.Task, bool) {
	t, ok := c.find(doc)
	if !ok {
		return dispatch.Task{}, false
	}
	h := heldDocOf(t).task()
	h.Pickup.Window, h.Dropoff.Window = cloneWindow(h.Pickup.Window), cloneWindow(h.Dropoff.Window)
	return h, true
}

// find returns the task doc decodes to, if known: the cache's own, not to be changed.
func (c *taskDocs) find(doc []byte) (dispatch.Task, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.cur[string(doc)]
	if !ok {
		if t, ok = c.old[string(doc)]; ok {
			c.putLocked(string(doc), t)
		}
	}
	return t, ok
}

// put records that doc decodes to t, which the cache keeps a copy of.
func (c *taskDocs) put(doc string, t dispatch.Task) {
	if strings.Contains(doc, `\ufffd`) {
		return // maybe a string that was not UTF-8: decoding it gives something else than t
	}
	t = cloneTask(t)
	c.mu.Lock()
	c.putLocked(doc, t)
	c.mu.Unlock()
}

func (c *taskDocs) putLocked(doc string, t dispatch.Task) {
	if c.cur == nil || len(c.cur) >= maxTaskDocs {
		c.old, c.cur = c.cur, make(map[string]dispatch.Task, maxTaskDocs)
	}
	c.cur[doc] = t
}

// cloneTask is t.Clone with the proofs' capture locations copied too: nothing of the copy is shared
// with t, as with a task decoded afresh.
func cloneTask(t dispatch.Task) dispatch.Task {
	c := t.Clone()
	for i := range c.Proofs {
		if l := c.Proofs[i].CaptureLocation; l != nil {
			cl := *l
			c.Proofs[i].CaptureLocation = &cl
		}
	}
	return c
}

func cloneWindow(w *dispatch.Window) *dispatch.Window {
	if w == nil {
		return nil
	}
	c := *w
	return &c
}

// decodeTask returns the task doc holds, from s.docs when it was decoded or written before.
func (s *Store) decodeTask(doc []byte) (dispatch.Task, error) {
	if t, ok := s.docs.get(doc); ok {
		return t, nil
	}
	var t dispatch.Task
	if err := decode(doc, &t, "task"); err != nil {
		return dispatch.Task{}, err
	}
	s.docs.put(string(doc), t)
	return t, nil
}
