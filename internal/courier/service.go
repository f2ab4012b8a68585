package courier

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"lastmile/internal/platform/apperr"
)

// UserInfo is what the courier service needs to know about an identity user.
type UserInfo struct {
	ID string
	// Role is one of the auth.Role* names.
	Role string
	// Status is "active", "suspended" or "deleted"; only active users can become couriers.
	Status      string
	DisplayName string
}

// UserActive is the UserInfo.Status of a user who may log in.
const UserActive = "active"

// Users looks up identity users. The identity service's gRPC client implements it.
type Users interface {
	// GetUser returns the user with id. NotFound when there is none; Unavailable when identity cannot be
	// reached.
	GetUser(ctx context.Context, id string) (UserInfo, error)
}

// Defaults of Options.
const (
	DefaultFlushInterval  = 2 * time.Second
	DefaultFlushBatch     = 1000
	DefaultFixesPerSecond = 10
	DefaultFixBurst       = 100
	DefaultMaxClockSkew   = 30 * time.Second
	DefaultMaxFixAge      = 10 * time.Minute
)

// Contract limits.
const (
	// MaxDisplayNameLen bounds display names, in characters.
	MaxDisplayNameLen = 100
	// DefaultPageSize and MaxPageSize bound ListCouriers pages.
	DefaultPageSize = 50
	MaxPageSize     = 1000
	// AvailabilityHorizon is how far ahead hour slots may be changed.
	AvailabilityHorizon = 90 * 24 * time.Hour
	// MaxAvailabilityRange bounds SetAvailability's hours and GetAvailability's range (31 days).
	MaxAvailabilityRange = 744 * time.Hour
	// MaxFixesPerReport bounds the fixes of one ReportLocations message.
	MaxFixesPerReport = 100
)

// Options configures a Service. The zero value is usable: the defaults above and the wall clock.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives flush failures; nil means slog.Default().
	Logger *slog.Logger
	// FlushInterval is how often accepted locations are persisted; a crash loses at most this window.
	FlushInterval time.Duration
	// FlushBatch makes the flusher persist early once this many couriers have unsaved locations.
	FlushBatch int
	// FixesPerSecond and FixBurst are the per-courier token bucket for location fixes. Fixes over it are
	// rejected as RATE_LIMITED.
	FixesPerSecond float64
	FixBurst       int
	// MaxClockSkew is how far ahead of the server clock a fix may be (device clocks drift).
	MaxClockSkew time.Duration
	// MaxFixAge is how old a fix may be when it arrives; older fixes are STALE.
	MaxFixAge time.Duration
}

// Service implements the courier service's use cases over a Store. It is safe for concurrent use. Call
// Load before serving and Run while serving (see the package documentation for the live state).
type Service struct {
	store  Store
	users  Users
	now    func() time.Time
	logger *slog.Logger
	opts   Options

	live  *live
	watch *broadcaster

	// refreshMu serialises read-after-write refreshes of one courier's live state (striped by id), and a
	// claim whose transaction reads that state (claimLive), so that an older read never overwrites a newer
	// one.
	refreshMu [64]sync.Mutex
	seed      maphash.Seed

	pendingMu sync.Mutex
	pending   map[string]LocationFix
	flushNow  chan struct{}
	lastHour  time.Time
}

// NewService returns a Service over store that looks users up in users.
func NewService(store Store, users Users, opts Options) *Service {
	setDefault(&opts.FlushInterval, DefaultFlushInterval)
	setDefault(&opts.FlushBatch, DefaultFlushBatch)
	setDefault(&opts.FixesPerSecond, DefaultFixesPerSecond)
	setDefault(&opts.FixBurst, DefaultFixBurst)
	setDefault(&opts.MaxClockSkew, DefaultMaxClockSkew)
	setDefault(&opts.MaxFixAge, DefaultMaxFixAge)
	s := &Service{
		store:    store,
		users:    users,
		now:      opts.Now,
		logger:   opts.Logger,
		opts:     opts,
		live:     newLive(),
		watch:    newBroadcaster(),
		seed:     maphash.MakeSeed(),
		pending:  make(map[string]LocationFix),
		flushNow: make(chan struct{}, 1),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	return s
}

// storedTime returns t as stores keep it: in UTC, to the microsecond. The domain rounds times before
// storing them, so that what it returns equals what it reads back later.
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func setDefault[T int | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// errClosed ends watches and rejects new ones once the service shuts down.
var errClosed = apperr.Errorf(apperr.Unavailable, "courier service is shutting down; reconnect")
