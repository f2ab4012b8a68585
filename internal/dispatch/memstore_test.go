package dispatch_test

// An in-memory dispatch.Store and event source for the session and watch tests, until the real SQLite
// store (internal/dispatch/sqlite) lands; then these tests switch to it and this file goes.

import (
	"context"
	"slices"
	"sync"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/eventlog"
)

// memSource is an in-memory event log: memStore appends to it under its own lock, so sequence order is
// commit order.
type memSource struct {
	mu     sync.Mutex
	events []eventlog.Event
}

func (s *memSource) Head(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.events)), nil
}

func (s *memSource) Read(_ context.Context, after int64, limit int) ([]eventlog.Event, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if after >= int64(len(s.events)) {
		return nil, 0, nil
	}
	out := s.events[after:]
	if len(out) > limit {
		out = out[:limit]
	}
	return slices.Clone(out), 0, nil
}

func (s *memSource) Prune(context.Context, eventlog.Retention, time.Time) (int64, error) {
	return 0, nil
}

func (s *memSource) add(topic, key string, payload []byte) int64 {
	return s.addAll([]eventlog.Event{{Topic: topic, Key: key, Payload: payload}})
}

// addAll appends events at once, as one transaction commits them, and returns the first's sequence.
func (s *memSource) addAll(events []eventlog.Event) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := int64(len(s.events)) + 1
	for i, e := range events {
		e.Seq, e.At = first+int64(i), time.Now().UTC().Truncate(time.Microsecond)
		if e.Payload == nil {
			e.Payload = []byte{}
		}
		s.events = append(s.events, e)
	}
	return first
}

// memStore keeps what the session and watch tests need; other methods are not implemented (the embedded
// nil Store panics if they are called).
type memStore struct {
	dispatch.Store
	src *memSource
	log *eventlog.Log

	mu         sync.Mutex
	tasks      map[string]dispatch.Task
	deliveries []dispatch.Delivery
	sessions   map[string]dispatch.Session
	commands   map[[2]string]dispatch.CommandRecord
}

func newMemStore(src *memSource) *memStore {
	return &memStore{src: src, tasks: map[string]dispatch.Task{}, sessions: map[string]dispatch.Session{},
		commands: map[[2]string]dispatch.CommandRecord{}}
}

func (m *memStore) nudge() {
	if m.log != nil {
		m.log.Nudge()
	}
}

func (m *memStore) CreateTask(_ context.Context, t dispatch.Task) (dispatch.Task, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t.Version = 1
	m.tasks[t.ID] = t.Clone()
	m.src.add(dispatch.TopicTask, t.ID, nil)
	m.nudge()
	return t, true, nil
}

func (m *memStore) GetTask(_ context.Context, id string) (dispatch.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[id]
	if !ok {
		return dispatch.Task{}, apperr.Errorf(apperr.NotFound, "no task %s", id)
	}
	return t.Clone(), nil
}

func (m *memStore) TaskByOffer(_ context.Context, offerID string) (dispatch.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.tasks {
		if t.Offer(offerID) != nil {
			return t.Clone(), nil
		}
	}
	return dispatch.Task{}, apperr.Errorf(apperr.NotFound, "no offer %s", offerID)
}

func (m *memStore) matching(f dispatch.TaskFilter) []dispatch.Task {
	var out []dispatch.Task
	for _, t := range m.tasks {
		if (len(f.States) == 0 || slices.Contains(f.States, t.State)) &&
			(f.CourierID == "" || t.CourierID == f.CourierID) && (f.CustomerID == "" || t.CustomerID == f.CustomerID) {
			out = append(out, t.Clone())
		}
	}
	return out
}

func (m *memStore) ListTasks(_ context.Context, q dispatch.TaskQuery) ([]dispatch.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	all := m.matching(q.Filter)
	slices.SortFunc(all, func(a, b dispatch.Task) int {
		if c := b.CreateTime.Compare(a.CreateTime); c != 0 {
			return c
		}
		if a.ID > b.ID {
			return -1
		}
		return 1
	})
	var out []dispatch.Task
	for _, t := range all {
		if !q.AfterCreate.IsZero() || q.AfterID != "" {
			c := t.CreateTime.Compare(q.AfterCreate)
			if c > 0 || (c == 0 && t.ID >= q.AfterID) {
				continue
			}
		}
		if len(out) == q.Limit {
			break
		}
		out = append(out, t)
	}
	return out, nil
}

func (m *memStore) UpdateTask(_ context.Context, id string, fn func(dispatch.Task) (dispatch.Change, error)) (dispatch.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[id]
	if !ok {
		return dispatch.Task{}, apperr.Errorf(apperr.NotFound, "no task %s", id)
	}
	ch, err := fn(t.Clone())
	if err != nil {
		return dispatch.Task{}, err
	}
	ch.Task.Version = t.Version + 1
	m.tasks[id] = ch.Task.Clone()
	events := []eventlog.Event{{Topic: dispatch.TopicTask, Key: id}}
	for _, d := range ch.Deliveries {
		events = append(events, eventlog.Event{Topic: dispatch.TopicDelivery, Key: d.CourierID})
	}
	first := m.src.addAll(events)
	for i, d := range ch.Deliveries {
		d.Cursor = first + 1 + int64(i)
		m.deliveries = append(m.deliveries, d)
	}
	if ch.Command != nil {
		k := [2]string{ch.Command.CourierID, ch.Command.CommandID}
		if _, ok := m.commands[k]; !ok {
			m.commands[k] = *ch.Command
		}
	}
	m.nudge()
	return ch.Task.Clone(), nil
}

func (m *memStore) HeldTasks(_ context.Context, courierID string) ([]dispatch.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []dispatch.Task
	for _, t := range m.tasks {
		if t.State.Held() && t.CourierID == courierID {
			out = append(out, t.Clone())
		}
	}
	slices.SortFunc(out, func(a, b dispatch.Task) int { return a.AssignTime.Compare(b.AssignTime) })
	return out, nil
}

func (m *memStore) OfferedTasks(_ context.Context, courierID string) ([]dispatch.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []dispatch.Task
	for _, t := range m.tasks {
		if o := t.CurrentOffer(); o != nil && o.CourierID == courierID {
			out = append(out, t.Clone())
		}
	}
	slices.SortFunc(out, func(a, b dispatch.Task) int {
		return a.CurrentOffer().CreateTime.Compare(b.CurrentOffer().CreateTime)
	})
	return out, nil
}

func (m *memStore) Deliveries(_ context.Context, courierID string, after int64, limit int) ([]dispatch.Delivery, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []dispatch.Delivery
	for _, d := range m.deliveries {
		if d.CourierID == courierID && d.Cursor > after && len(out) < limit {
			out = append(out, d)
		}
	}
	return out, nil
}

func (m *memStore) LastCursor(_ context.Context, courierID string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var last int64
	for _, d := range m.deliveries {
		if d.CourierID == courierID {
			last = d.Cursor
		}
	}
	return last, nil
}

func (m *memStore) GetSession(_ context.Context, courierID string) (dispatch.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[courierID]
	if !ok {
		return dispatch.Session{CourierID: courierID}, nil
	}
	return s, nil
}

func (m *memStore) UpdateSession(_ context.Context, courierID string, fn func(dispatch.Session) (dispatch.Session, error)) (dispatch.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.sessions[courierID]
	if !ok {
		old = dispatch.Session{CourierID: courierID}
	}
	s, err := fn(old)
	if err != nil {
		return dispatch.Session{}, err
	}
	m.sessions[courierID] = s
	if s.SessionID != old.SessionID {
		m.src.add(dispatch.TopicSession, courierID, []byte(s.SessionID))
		m.nudge()
	}
	return s, nil
}

func (m *memStore) Command(_ context.Context, courierID, commandID string) (dispatch.CommandRecord, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.commands[[2]string{courierID, commandID}]
	return rec, ok, nil
}

func (m *memStore) SaveCommand(_ context.Context, rec dispatch.CommandRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{rec.CourierID, rec.CommandID}
	if _, ok := m.commands[k]; !ok {
		m.commands[k] = rec
	}
	return nil
}
