package courier

import (
	"slices"
	"sync"
	"time"
)

// Snapshot is the live state of one courier at a moment: what dispatch, the dashboard and the courier app
// need to decide and to display.
type Snapshot struct {
	// Courier is the profile with its stored status and ActiveTasks.
	Courier Courier
	// TaskIDs are the claimed tasks, ordered by claim time.
	TaskIDs []string
	// AvailableNow says whether the current hour slot is marked available.
	AvailableNow bool
	// Location is the latest accepted fix; valid only when HasLocation.
	Location    LocationFix
	HasLocation bool
	// LocationAge is how old Location was when the snapshot was taken.
	LocationAge time.Duration
}

// Status returns the courier's effective status, busy included.
func (s Snapshot) Status() Status { return s.Courier.EffectiveStatus() }

// entry is the live state of one courier. The live mutex guards it.
type entry struct {
	c Courier
	// tasks is replaced, never modified, so snapshots may share it.
	tasks     []string
	availNow  bool
	availHour time.Time

	loc     LocationFix
	hasLoc  bool
	cell    cellKey
	indexed bool

	// The per-courier token bucket of location fixes.
	tokens   float64
	tokensAt time.Time
	bucketOK bool
}

func (e *entry) snapshot(now time.Time) Snapshot {
	s := Snapshot{Courier: e.c, TaskIDs: e.tasks, AvailableNow: e.availNow, Location: e.loc, HasLocation: e.hasLoc}
	if e.hasLoc {
		s.LocationAge = max(now.Sub(e.loc.RecordedAt), 0)
	}
	return s
}

// live holds every courier's live state and the spatial index of their locations.
type live struct {
	mu     sync.RWMutex
	byID   map[string]*entry
	byUser map[string]string
	grid   *grid
}

func newLive() *live {
	return &live{byID: make(map[string]*entry), byUser: make(map[string]string), grid: newGrid()}
}

// set records the durable state of courier c, read from the store at a time when hour was the current
// hour, and returns its snapshot at now.
func (l *live) set(c Courier, tasks []string, availNow bool, hour, now time.Time) Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.byID[c.ID]
	if e == nil {
		e = &entry{}
		l.byID[c.ID] = e
		l.byUser[c.UserID] = c.ID
	}
	e.c, e.tasks = c, tasks
	if !hour.Before(e.availHour) {
		e.availNow, e.availHour = availNow, hour
	}
	return e.snapshot(now)
}

func (l *live) courierOfUser(userID string) string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.byUser[userID]
}

func (l *live) has(id string) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.byID[id] != nil
}

func (l *live) ids() []string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]string, 0, len(l.byID))
	for id := range l.byID {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// setAvailableNow records the availability of ids for hour (avail holds the available ones) and returns
// STATUS events for the couriers whose availability changed.
func (l *live) setAvailableNow(ids []string, avail map[string]bool, hour, now time.Time) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var events []Event
	for _, id := range ids {
		e := l.byID[id]
		if e == nil || hour.Before(e.availHour) {
			continue
		}
		changed := e.availNow != avail[id]
		e.availNow, e.availHour = avail[id], hour
		if changed {
			events = append(events, Event{Snapshot: e.snapshot(now), Changes: []Change{ChangeStatus}, At: now})
		}
	}
	return events
}
