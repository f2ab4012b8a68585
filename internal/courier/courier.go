// Package courier is the domain of lastmile's courier service: courier profiles, availability hours, live
// status, location telemetry, nearby search and the capacity claims that dispatch places on couriers. It
// knows nothing about Protobuf, SQL or gRPC; the transport adapter (grpcapi) and the stores (sqlite,
// postgres) depend on it, not the other way round.
//
// # Durable and live state
//
// Profiles, status, availability hours and claims are durable: every change goes through the Store in one
// transaction. The capacity rules (never more claims than capacity; no claim while not AVAILABLE; no
// OFFLINE while holding claims; no unavailable slot that carries a claim; a task on one courier at a
// time) are this package's (rules.go); the Service hands them to the Store as closures that run inside
// that transaction, under the courier's lock, so concurrent callers and several replicas cannot break
// them and no store repeats them.
//
// Locations are live state. The latest accepted fix of each courier lives in an in-memory spatial index and
// is persisted by a background flusher (Service.Run) in batches (Store.SaveLocations) every FlushInterval
// (2 s by default) or as soon as FlushBatch couriers have unsaved positions, and once more on shutdown;
// on start the index is warmed from Store.LoadLocations (Service.Load). Only the latest fix per courier is
// pending, so the flusher's memory is bounded by the number of couriers. A crash therefore loses at most
// the flush window of positions (a few seconds), and the courier's next fix repairs it.
//
// Next to each position the live state caches what nearby search filters on (status, capacity, claims,
// mode, the current hour's availability), refreshed from the store after every change this process makes
// (a claim or a release reads it in its own transaction, so nothing is read after its commit) and when
// the hour turns. The cache only ranks candidates: the store still decides every claim, so a
// stale entry can cost dispatch one refused claim, never an over-claim. The live state serves one process:
// with several courier replicas each sees the fixes it ingested plus what it loaded at start, so courier
// apps should keep their long-lived ReportLocations stream on one replica.
//
// # Spatial index
//
// FindNearbyCouriers uses a uniform grid over latitude and longitude with cells of 0.01 degree (about
// 1.1 km north-south, less east-west away from the equator). A grid was chosen over geohash and S2 because
// it is exact and simple. Moving a courier is a map delete and insert, which is what a write-heavy
// telemetry index needs. A query visits the cells of the box bounding the search circle (the box wraps at
// the antimeridian and widens to whole rows near the poles) in rings around the center cell, keeping the
// best candidates by great-circle distance in a bounded heap; after each ring it knows a lower bound on
// the distance of every unvisited cell, so it stops as soon as that bound passes the radius or the worst
// kept candidate. Dispatch's typical query (a few km, ten results in a city) visits a few dozen cells.
// When the box has more cells than there are couriers (50 km radii in a small fleet, the poles), scanning
// every courier is cheaper, and the index does that instead. Geohash would add prefix arithmetic and the
// same neighbour problem at cell edges; S2 would need a dependency for no gain at this scale. Results are
// checked against a brute-force scan in property tests.
package courier

import (
	"context"
	"time"

	"lastmile/internal/geo"
)

// Mode is how a courier travels: geo.TransportMode, the one transport-mode type of every service. Stores
// keep its name ("bicycle").
type Mode = geo.TransportMode

// The transport modes (geo's).
const (
	ModeBicycle = geo.Bicycle
	ModeScooter = geo.Scooter
	ModeCar     = geo.Car
	ModeVan     = geo.Van
	ModeWalking = geo.Walking
)

// Modes lists every transport mode, in the order of the API's enum (geo.Modes). Read-only.
var Modes = geo.Modes

// MaxCapacity is the largest capacity a courier may have.
const MaxCapacity = 100

// Status is what a courier is doing right now.
type Status string

// The statuses. Offline, available and on break are stored; busy is derived, never stored: a courier is
// busy while their stored status is available and the claimed tasks fill the capacity.
const (
	StatusOffline   Status = "offline"
	StatusAvailable Status = "available"
	StatusOnBreak   Status = "on_break"
	StatusBusy      Status = "busy"
)

// Settable reports whether s may be stored (set with SetStatus): every status except busy.
func (s Status) Settable() bool {
	switch s {
	case StatusOffline, StatusAvailable, StatusOnBreak:
		return true
	}
	return false
}

// Valid reports whether s is one of the defined statuses, busy included.
func (s Status) Valid() bool { return s.Settable() || s == StatusBusy }

// Courier is the profile of a person who carries deliveries, linked to one identity user with role
// courier.
type Courier struct {
	// ID is a UUIDv7, so keyset pagination by id follows registration order.
	ID string
	// UserID is the identity user behind the courier; unique across couriers and immutable.
	UserID      string
	DisplayName string
	Mode        Mode
	// Capacity is how many tasks the courier can hold at once, 1 to MaxCapacity.
	Capacity int
	// Status is the stored status: offline, available or on_break, never busy (see EffectiveStatus).
	Status Status
	// ActiveTasks is the number of tasks claimed on the courier. Stores fill it on reads and ignore it on
	// writes: claims change only through ClaimCourier and ReleaseCourier.
	ActiveTasks int
	CreatedAt   time.Time
	// UpdatedAt is when the profile (display name, mode, capacity) last changed.
	UpdatedAt time.Time
	// Version starts at 1 and increases by one on every profile update; it is the etag and the
	// optimistic-concurrency check. Status changes and claims do not change it.
	Version int64
}

// EffectiveStatus returns the status callers see: busy when the stored status is available and the
// claimed tasks fill the capacity, the stored status otherwise.
func (c Courier) EffectiveStatus() Status {
	if c.Status == StatusAvailable && c.ActiveTasks >= c.Capacity {
		return StatusBusy
	}
	return c.Status
}

// FreeCapacity returns how many more tasks the courier can hold, never less than zero.
func (c Courier) FreeCapacity() int { return max(c.Capacity-c.ActiveTasks, 0) }

// Filter narrows ListCouriers and CountCouriers. Zero fields do not filter. Status is matched against the
// effective status: available means stored available with free capacity, busy means stored available with
// no free capacity.
type Filter struct {
	Status Status
	Mode   Mode
}

// Slot is one hour of a courier's plan.
type Slot struct {
	// Start is the start of the hour in UTC, on the hour.
	Start time.Time
	// Available says whether the courier plans to work during the hour.
	Available bool
	// AssignedTasks is the number of claims that cover the hour (see Claim.Covers).
	AssignedTasks int
}

// LocationFix is one accepted GPS position of a courier.
type LocationFix struct {
	CourierID string
	// Lat and Lng are WGS84 degrees.
	Lat, Lng float64
	// RecordedAt is when the device took the fix (device clock), in UTC to the microsecond: the service
	// truncates fixes on arrival, so the live index and the stores agree.
	RecordedAt time.Time
	// AccuracyMeters is the horizontal accuracy radius; 0 means unknown.
	AccuracyMeters float64
	// SpeedMPS and Heading are what the device reported; negative means unknown. Heading is in degrees
	// clockwise from true north, [0, 360).
	SpeedMPS float64
	Heading  float64
}

// Claim is one unit of a courier's capacity reserved by dispatch for a task. A task is claimed on at most
// one courier at a time.
type Claim struct {
	CourierID string
	TaskID    string
	ClaimedAt time.Time
	// ExpectedRelease is when dispatch expects to release the claim; always after ClaimedAt (the service
	// sets it to the end of the claim's hour when dispatch gives none).
	ExpectedRelease time.Time
	// Generation is the highest generation the claim was made with (0: none); a release of a lower
	// generation leaves it in place (see ClaimRequest.Generation).
	Generation int64
}

// Holding is what a claim's rule reads besides the courier: who holds the task's claim and how recent
// the claims and releases of the task on the courier are.
type Holding struct {
	// Holder is the courier holding the task's claim, "" when none.
	Holder string
	// Generation is the holder's claim's generation (0 when none, or claimed without one).
	Generation int64
	// Released is the highest generation released for the task on the courier being claimed and still
	// kept (0 when none).
	Released int64
}

// ReleaseKeep is how long the highest generation released for a task on a courier is kept: a claim of
// that task and courier that lands later with a generation not above it is superseded. A call lands
// within its deadline (dispatch's calls to the courier service last seconds), so a day leaves a wide
// margin; the rows of a courier are purged by its next release after that.
const ReleaseKeep = 24 * time.Hour

// Covers reports whether the claim holds the hour slot starting at hour: whether the hour
// [hour, hour+1h) overlaps [ClaimedAt, ExpectedRelease). A slot that a claim covers cannot be made
// unavailable.
func (c Claim) Covers(hour time.Time) bool {
	return hour.Add(time.Hour).After(c.ClaimedAt) && hour.Before(c.ExpectedRelease)
}

// MaxStoreLimit bounds the couriers one Store.ListCouriers call returns; stores lower larger limits to
// it. It is one more than MaxPageSize because the Service reads one row past a page to learn whether
// another page follows.
const MaxStoreLimit = MaxPageSize + 1

// Store persists courier data. The implementation is sqlstore.Store, on SQLite (package sqlite) or
// PostgreSQL (package postgres), checked by storetest.Run. Errors carry apperr codes as documented per
// method; any other error is Internal. Times are stored with at least microsecond precision and returned
// in UTC.
//
// A Store holds no business rule. The changes that rules guard follow the repository shape of Wild
// Workouts (UpdateHour(ctx, hour, updateFn)): the Store opens a transaction, takes the courier's lock,
// reads what the rule needs, runs the closure the Service passes in and writes what it returns, so the
// rule and the write are atomic with respect to every other change of the courier, on any replica. An
// error from the closure rolls the transaction back and is returned as is. A closure runs once, inside
// the transaction: it must not call the Store (SQLite's single connection would wait for itself).
type Store interface {
	// CreateCourier inserts c (ActiveTasks ignored). Conflict when c.ID exists or c.UserID already has a
	// courier; Invalid when c cannot be stored.
	CreateCourier(ctx context.Context, c Courier) error
	// GetCourier returns the courier with id, ActiveTasks filled. NotFound when there is none.
	GetCourier(ctx context.Context, id string) (Courier, error)
	// GetCourierByUser returns the courier linked to the identity user userID. NotFound when there is none.
	GetCourierByUser(ctx context.Context, userID string) (Courier, error)
	// UpdateCourier runs update on courier id as stored (ActiveTasks filled) while holding its lock, and
	// writes the courier update returns: DisplayName, Mode, Capacity, Status, UpdatedAt and Version, never
	// ID, UserID, CreatedAt or ActiveTasks. When update returns the courier unchanged nothing is written.
	// It returns the courier as stored afterwards. NotFound when absent; Invalid when the result cannot
	// be stored; update's error as is.
	UpdateCourier(ctx context.Context, id string, update func(Courier) (Courier, error)) (Courier, error)
	// ListCouriers returns up to limit couriers matching f with ID greater than after (keyset pagination,
	// "" for the first page), ordered by ID, ActiveTasks filled. A limit above MaxStoreLimit is lowered
	// to it; Invalid when limit is below 1.
	ListCouriers(ctx context.Context, f Filter, after string, limit int) ([]Courier, error)
	// CountCouriers returns how many couriers match f.
	CountCouriers(ctx context.Context, f Filter) (int, error)

	// SetAvailability runs check on the claims of courier id while holding its lock and, when check
	// returns nil, marks each of hours (normalised to the start of their hour in UTC) available or
	// unavailable; setting a slot to the state it has changes nothing. All or nothing. NotFound when the
	// courier is absent; check's error as is.
	SetAvailability(ctx context.Context, id string, hours []time.Time, available bool, check func(claims []Claim) error) error
	// AvailableHours returns the starts of the hours in [from, to) that courier id marked available,
	// ascending. NotFound when the courier is absent.
	AvailableHours(ctx context.Context, id string, from, to time.Time) ([]time.Time, error)
	// AvailableAt returns which of ids marked the hour starting at hour available; ids that did not, or do
	// not exist, are absent from the map.
	AvailableAt(ctx context.Context, hour time.Time, ids []string) (map[string]bool, error)

	// ClaimCourier runs decide on courier id as stored (ActiveTasks filled) and on the id of the courier
	// holding taskID ("" when none), while holding courier id's lock, and stores the claim decide returns;
	// nil stores nothing. Concurrent claims on one courier therefore see each other's claims. NotFound
	// when the courier is absent; Conflict when another courier's claim of taskID committed after decide
	// ran (the one-courier-per-task key settles races between couriers); Invalid when the claim is not
	// of courier id and task taskID or cannot be stored; decide's error as is.
	ClaimCourier(ctx context.Context, id, taskID string, decide func(c Courier, holder string) (*Claim, error)) error
	// ReleaseCourier deletes the claim of taskID on courier id and reports whether there was one; releasing
	// a claim that does not exist changes nothing. NotFound when the courier is absent.
	ReleaseCourier(ctx context.Context, id, taskID string) (released bool, err error)
	// Claims returns the claims held by courier id, ordered by ClaimedAt then TaskID. NotFound when the
	// courier is absent.
	Claims(ctx context.Context, id string) ([]Claim, error)
	// LiveState returns what a courier's live view is made of, as of one moment: courier id (ActiveTasks
	// filled), its claims ordered by ClaimedAt then TaskID, and whether it marked the hour starting at
	// hour (normalised to the start of its hour in UTC) available. NotFound when the courier is absent.
	LiveState(ctx context.Context, id string, hour time.Time) (c Courier, claims []Claim, availNow bool, err error)
	// ClaimCourierLive is ClaimCourier, with the same errors, that also returns courier id's live state
	// as the claim's transaction leaves it: what LiveState at hour would answer right after the commit,
	// the claim decide returned included (as read when decide stores nothing). The Service claims through
	// it, so that no read follows a claim's commit.
	ClaimCourierLive(ctx context.Context, id, taskID string, hour time.Time, decide func(c Courier, holder string) (*Claim, error)) (LiveRecord, error)
	// ReleaseCourierLive is ReleaseCourier, with the same errors, that also returns courier id's live
	// state read after the claim was deleted, as LiveState at hour answers it. The Service releases
	// through it.
	ReleaseCourierLive(ctx context.Context, id, taskID string, hour time.Time) (released bool, rec LiveRecord, err error)
	// ClaimCourierHolding is ClaimCourierLive whose decide also gets the Holding of taskID as read under
	// the lock (Released: of taskID on courier id). When decide returns a claim of a task courier id
	// already holds, the store raises that claim's Generation to the returned one (never lowers it)
	// instead of inserting; the returned state shows the claim as stored.
	ClaimCourierHolding(ctx context.Context, id, taskID string, hour time.Time, decide func(c Courier, h Holding) (*Claim, error)) (LiveRecord, error)
	// ReleaseCourierGeneration is ReleaseCourierLive ordered by generation (generation > 0): it deletes
	// the claim of taskID on courier id only when the claim's Generation is not above generation, and
	// records generation as released for taskID on courier id until keepUntil (keeping the higher of the
	// stored and the new generation, and the later keepUntil), atomically with respect to claims of
	// courier id: a claim that read no such record before it committed is deleted. It also deletes
	// courier id's released records whose keepUntil is before now. Invalid for a generation below 1.
	ReleaseCourierGeneration(ctx context.Context, id, taskID string, hour time.Time, generation int64, now, keepUntil time.Time) (released bool, rec LiveRecord, err error)

	// SaveLocations upserts the latest location of each courier in fixes (a batch may hold several fixes
	// of one courier and is in no particular order). A fix never replaces a stored one with a later or
	// equal RecordedAt, so a delayed flush cannot move a courier back in time; fixes of unknown couriers
	// are skipped. Invalid for a fix without a courier or with a number that is not finite.
	SaveLocations(ctx context.Context, fixes []LocationFix) error
	// LoadLocations returns the stored latest location of every courier that has one, ordered by
	// CourierID, to warm the in-memory index at start.
	LoadLocations(ctx context.Context) ([]LocationFix, error)
}

// LiveRecord is what a courier's live view is made of, as a store reads it at one moment (the answer of
// Store.LiveState in one value).
type LiveRecord struct {
	// Courier is the courier as stored, ActiveTasks filled.
	Courier Courier
	// Claims are the courier's claims, ordered by ClaimedAt then TaskID.
	Claims []Claim
	// AvailableNow says whether the courier marked the hour asked about available.
	AvailableNow bool
}
