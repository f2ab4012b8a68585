// Package couriertest provides fakes of the courier domain's dependencies for other packages' tests: an
// in-memory Store that keeps every rule of courier.Store (it passes storetest.Run) and a Users directory.
package couriertest

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
)

// Store is an in-memory courier.Store. One mutex guards everything, so every method is atomic, which is
// what the SQL stores achieve with transactions. The zero value is not usable; call NewStore.
type Store struct {
	mu        sync.Mutex
	couriers  map[string]courier.Courier // ActiveTasks not maintained here; filled on reads
	byUser    map[string]string
	available map[string]map[int64]bool // courier id -> hour start (Unix seconds) -> available
	claims    map[string]courier.Claim  // task id -> claim
	locations map[string]courier.LocationFix

	err error
}

// SetErr makes every method return err until it is called again with nil, to test failure paths.
func (s *Store) SetErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

var _ courier.Store = (*Store)(nil)

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{
		couriers:  make(map[string]courier.Courier),
		byUser:    make(map[string]string),
		available: make(map[string]map[int64]bool),
		claims:    make(map[string]courier.Claim),
		locations: make(map[string]courier.LocationFix),
	}
}

// ts stores times as the SQL stores do: in UTC, to the microsecond.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

var errNoCourier = apperr.Errorf(apperr.NotFound, "courier not found")

// activeTasks counts the claims of courier id. The caller holds mu.
func (s *Store) activeTasks(id string) int {
	n := 0
	for _, c := range s.claims {
		if c.CourierID == id {
			n++
		}
	}
	return n
}

// read returns courier id with ActiveTasks filled. The caller holds mu.
func (s *Store) read(id string) (courier.Courier, bool) {
	c, ok := s.couriers[id]
	if !ok {
		return courier.Courier{}, false
	}
	c.ActiveTasks = s.activeTasks(id)
	return c, true
}

// CreateCourier implements courier.Store.
func (s *Store) CreateCourier(_ context.Context, c courier.Courier) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if _, ok := s.couriers[c.ID]; ok {
		return apperr.Errorf(apperr.Conflict, "courier %s already exists", c.ID)
	}
	if _, ok := s.byUser[c.UserID]; ok {
		return apperr.Errorf(apperr.Conflict, "user already has a courier")
	}
	c.ActiveTasks = 0
	c.CreatedAt, c.UpdatedAt = ts(c.CreatedAt), ts(c.UpdatedAt)
	s.couriers[c.ID] = c
	s.byUser[c.UserID] = c.ID
	return nil
}

// GetCourier implements courier.Store.
func (s *Store) GetCourier(_ context.Context, id string) (courier.Courier, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return courier.Courier{}, s.err
	}
	c, ok := s.read(id)
	if !ok {
		return courier.Courier{}, errNoCourier
	}
	return c, nil
}

// GetCourierByUser implements courier.Store.
func (s *Store) GetCourierByUser(_ context.Context, userID string) (courier.Courier, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return courier.Courier{}, s.err
	}
	c, ok := s.read(s.byUser[userID])
	if !ok {
		return courier.Courier{}, errNoCourier
	}
	return c, nil
}

// UpdateCourier implements courier.Store.
func (s *Store) UpdateCourier(_ context.Context, c courier.Courier) (courier.Courier, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return courier.Courier{}, s.err
	}
	cur, ok := s.couriers[c.ID]
	if !ok {
		return courier.Courier{}, errNoCourier
	}
	if cur.Version != c.Version-1 {
		return courier.Courier{}, apperr.Errorf(apperr.Aborted, "courier %s changed concurrently", c.ID)
	}
	if c.Capacity < s.activeTasks(c.ID) {
		return courier.Courier{}, apperr.Errorf(apperr.FailedPrecondition, "capacity below claimed tasks")
	}
	cur.DisplayName, cur.Mode, cur.Capacity = c.DisplayName, c.Mode, c.Capacity
	cur.UpdatedAt, cur.Version = ts(c.UpdatedAt), c.Version
	s.couriers[c.ID] = cur
	out, _ := s.read(c.ID)
	return out, nil
}

// matches reports whether c (ActiveTasks filled) passes f.
func matches(c courier.Courier, f courier.Filter) bool {
	return (f.Mode == "" || c.Mode == f.Mode) && (f.Status == "" || c.EffectiveStatus() == f.Status)
}

// ListCouriers implements courier.Store.
func (s *Store) ListCouriers(_ context.Context, f courier.Filter, after string, limit int) ([]courier.Courier, error) {
	limit, err := courier.StoreLimit(limit)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	var out []courier.Courier
	for id := range s.couriers {
		c, _ := s.read(id)
		if id > after && matches(c, f) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b courier.Courier) int { return strings.Compare(a.ID, b.ID) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// CountCouriers implements courier.Store.
func (s *Store) CountCouriers(_ context.Context, f courier.Filter) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	n := 0
	for id := range s.couriers {
		if c, _ := s.read(id); matches(c, f) {
			n++
		}
	}
	return n, nil
}

// SetStatus implements courier.Store.
func (s *Store) SetStatus(_ context.Context, id string, st courier.Status) (courier.Courier, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return courier.Courier{}, s.err
	}
	c, ok := s.couriers[id]
	if !ok {
		return courier.Courier{}, errNoCourier
	}
	if st == courier.StatusOffline && s.activeTasks(id) > 0 {
		return courier.Courier{}, apperr.Errorf(apperr.FailedPrecondition, "courier holds claimed tasks")
	}
	c.Status = st
	s.couriers[id] = c
	out, _ := s.read(id)
	return out, nil
}

// SetAvailability implements courier.Store.
func (s *Store) SetAvailability(_ context.Context, id string, hours []time.Time, available bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if _, ok := s.couriers[id]; !ok {
		return errNoCourier
	}
	if !available {
		for _, c := range s.claims {
			if c.CourierID != id {
				continue
			}
			for _, h := range hours {
				if c.Covers(h) {
					return apperr.Errorf(apperr.FailedPrecondition, "hour %s carries a claimed task", h.UTC().Format(time.RFC3339))
				}
			}
		}
	}
	m := s.available[id]
	if m == nil {
		m = make(map[int64]bool)
		s.available[id] = m
	}
	for _, h := range hours {
		if available {
			m[h.Unix()] = true
		} else {
			delete(m, h.Unix())
		}
	}
	return nil
}

// AvailableHours implements courier.Store.
func (s *Store) AvailableHours(_ context.Context, id string, from, to time.Time) ([]time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	if _, ok := s.couriers[id]; !ok {
		return nil, errNoCourier
	}
	var out []time.Time
	for sec := range s.available[id] {
		h := time.Unix(sec, 0).UTC()
		if !h.Before(from) && h.Before(to) {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return out, nil
}

// AvailableAt implements courier.Store.
func (s *Store) AvailableAt(_ context.Context, hour time.Time, ids []string) (map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	out := make(map[string]bool)
	for _, id := range ids {
		if s.available[id][hour.Unix()] {
			out[id] = true
		}
	}
	return out, nil
}

// ClaimCourier implements courier.Store.
func (s *Store) ClaimCourier(_ context.Context, c courier.Claim) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false, s.err
	}
	cur, ok := s.couriers[c.CourierID]
	if !ok {
		return false, errNoCourier
	}
	if held, ok := s.claims[c.TaskID]; ok {
		if held.CourierID == c.CourierID {
			return true, nil
		}
		return false, apperr.Errorf(apperr.FailedPrecondition, "task is claimed on another courier")
	}
	if cur.Status != courier.StatusAvailable {
		return false, apperr.Errorf(apperr.FailedPrecondition, "courier is not available")
	}
	if s.activeTasks(c.CourierID) >= cur.Capacity {
		return false, apperr.Errorf(apperr.FailedPrecondition, "courier has no free capacity")
	}
	c.ClaimedAt, c.ExpectedRelease = ts(c.ClaimedAt), ts(c.ExpectedRelease)
	s.claims[c.TaskID] = c
	return false, nil
}

// ReleaseCourier implements courier.Store.
func (s *Store) ReleaseCourier(_ context.Context, id, taskID string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false, s.err
	}
	if _, ok := s.couriers[id]; !ok {
		return false, errNoCourier
	}
	if c, ok := s.claims[taskID]; ok && c.CourierID == id {
		delete(s.claims, taskID)
		return true, nil
	}
	return false, nil
}

// Claims implements courier.Store.
func (s *Store) Claims(_ context.Context, id string) ([]courier.Claim, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	if _, ok := s.couriers[id]; !ok {
		return nil, errNoCourier
	}
	var out []courier.Claim
	for _, c := range s.claims {
		if c.CourierID == id {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b courier.Claim) int {
		return cmp.Or(a.ClaimedAt.Compare(b.ClaimedAt), strings.Compare(a.TaskID, b.TaskID))
	})
	return out, nil
}

// SaveLocations implements courier.Store.
func (s *Store) SaveLocations(_ context.Context, fixes []courier.LocationFix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	for _, f := range fixes {
		if _, ok := s.couriers[f.CourierID]; !ok {
			continue
		}
		f.RecordedAt = ts(f.RecordedAt)
		if cur, ok := s.locations[f.CourierID]; ok && !f.RecordedAt.After(cur.RecordedAt) {
			continue
		}
		s.locations[f.CourierID] = f
	}
	return nil
}

// LoadLocations implements courier.Store.
func (s *Store) LoadLocations(_ context.Context) ([]courier.LocationFix, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	out := make([]courier.LocationFix, 0, len(s.locations))
	for _, f := range s.locations {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b courier.LocationFix) int { return strings.Compare(a.CourierID, b.CourierID) })
	return out, nil
}
