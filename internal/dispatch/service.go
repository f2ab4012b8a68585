package dispatch

import (
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/eventlog"
)

// Defaults of Options.
const (
	DefaultOfferTimeout    = 20 * time.Second
	DefaultOfferGrace      = 2 * time.Second
	DefaultMaxWait         = 30 * time.Minute
	DefaultSearchRadius    = 3000.0
	DefaultMaxRadius       = 15000.0
	DefaultCandidates      = 20
	DefaultMaxLocationAge  = 5 * time.Minute
	DefaultRetryBackoff    = 5 * time.Second
	DefaultMaxRetryBackoff = 5 * time.Minute
	DefaultLease           = 30 * time.Second
	DefaultWorkers         = 8
	DefaultBatch           = 32
	DefaultIdempotency     = 48 * time.Hour
	DefaultTrackInterval   = 5 * time.Second
	// DefaultSessionRate and DefaultSessionBurst: see Options.SessionRate and session_limit.go.
	DefaultSessionRate  = 5.0
	DefaultSessionBurst = 100
	// DefaultMaxOpenTasks: see Options.MaxOpenTasks.
	DefaultMaxOpenTasks = 10000
)

// Contract limits.
const (
	DefaultPageSize   = 50
	MaxPageSize       = 1000
	MaxDecisions      = 20
	MaxSnapshotTasks  = 5000
	MaxWindowAhead    = 30 * 24 * time.Hour
	MaxUploadsPerTask = 8
	// MaxBatch bounds Options.Batch.
	MaxBatch = 256
)

// Options configures a Service. The zero value is usable: the defaults above and the wall clock.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives one line per decision and the workers' failures; nil means slog.Default().
	Logger *slog.Logger
	// Replica names this process in leases and sessions; empty makes a random one.
	Replica string
	// OfferTimeout is how long a courier has to answer an offer.
	OfferTimeout time.Duration
	// OfferGrace is how late an answer may arrive and still count (it was in flight).
	OfferGrace time.Duration
	// MaxWait is how long the engine looks for a courier for a task without a pickup window before it
	// makes the task UNASSIGNABLE.
	MaxWait time.Duration
	// SearchRadius is the first radius searched around a pickup; the engine doubles it up to MaxRadius.
	SearchRadius, MaxRadius float64
	// Candidates bounds the couriers asked for per search.
	Candidates int
	// MaxLocationAge ignores couriers whose last fix is older.
	MaxLocationAge time.Duration
	// RetryBackoff is the first wait before searching again for a task nobody could take; it doubles per
	// search up to MaxRetryBackoff (see retryBackoff). A courier becoming available or free cuts the wait
	// short.
	RetryBackoff, MaxRetryBackoff time.Duration
	// Weights are the engine's score weights; zero means DefaultWeights.
	Weights Weights
	// Lease is how long a replica holds a task it works; Workers how many tasks it works at once.
	Lease   time.Duration
	Workers int
	// Batch is how many due tasks a worker leases and decides together (batch.go): their searches' reads
	// of dispatch's own state, their pickup ETAs and their writes are shared. 1 works one task at a time.
	Batch int
	// Idempotency is how long request ids and command ids are remembered (at least 24 h).
	Idempotency time.Duration
	// TrackInterval is how often WatchTask refreshes the courier's position and ETA.
	TrackInterval time.Duration
	// SessionRate and SessionBurst bound the messages (commands and acks) one courier's sessions may send:
	// a token bucket of SessionBurst tokens refilled at SessionRate a second (CourierSession.Admit). Zero
	// means DefaultSessionRate and DefaultSessionBurst.
	SessionRate  float64
	SessionBurst int
	// MaxOpenTasks bounds the open tasks (in any state but DELIVERED, CANCELLED and FAILED) of one
	// customer: CreateTask refuses another with ResourceExhausted. UNASSIGNABLE is not final, so without a
	// bound a customer's tasks would pile up for good. Zero means DefaultMaxOpenTasks.
	MaxOpenTasks int
	// AccountSweep is how often each replica checks the accounts of the couriers with open offers or
	// tasks not picked up, to catch the account changes it missed (sweep.go); 0 means
	// DefaultAccountSweep.
	AccountSweep time.Duration
	// MaxUploadBytes bounds a proof file's size; 0 means DefaultMaxUploadBytes, and more than that is
	// reduced to it (the contract's maximum).
	MaxUploadBytes int64
	// AllowedContentTypes are the proof files' MIME types accepted; nil means DefaultAllowedContentTypes.
	// Types outside DefaultAllowedContentTypes are ignored: the server cannot check them. Signatures are
	// image/png only, so a list without it refuses every signature.
	AllowedContentTypes []string
}

// Service implements dispatch's use cases. It is safe for concurrent use. Call Run while serving: it
// works the task queue, tails the event feed for sessions and watchers, and purges old records.
type Service struct {
	store    Store
	uploads  UploadStore
	blobs    Blobs
	couriers Couriers
	accounts Accounts
	routes   Routes
	events   *eventlog.Log
	now      func() time.Time
	logger   *slog.Logger
	opts     Options
	engine   *Engine
	metrics  Metrics
	hub      *hub

	courierIDs    courierIDCache
	sessionLimits *sessionLimits
	shareKeys     ShareKeys
	shareKeyCache shareKeyCache
	kickCh        chan struct{}
	// offering are the couriers this replica's batches are offering a task to (batch.go).
	offering offering
	// fresh are the tasks created on this replica since the work loop last leased (batch.go).
	fresh    freshTasks
	lastWake atomic.Int64
	// freed counts the couriers freed for another task since the work loop last woke tasks for them
	// (courierFreed).
	freed atomic.Int64
	// started is when the Service was made (as stored): a writer lease of an upload that runs out before
	// started+UploadWriterLease was taken before it (endDeadLeases).
	started time.Time
	// freedEver counts the couriers freed for another task on this replica since it started: a batch
	// compares it before its searches and after its writes (contention.freed).
	freedEver atomic.Int64
	// waitGen counts the deferrals seen (mayWait); followedEvents the courier events followed (wake.go).
	waitGen        atomic.Uint64
	followedEvents atomic.Int64
	// sweep is the state of the account sweeps (sweep.go).
	sweep sweeper
}

// Deps are the Service's collaborators.
type Deps struct {
	Store    Store
	Uploads  UploadStore
	Blobs    Blobs
	Couriers Couriers
	Routes   Routes
	// Accounts tells whether the user behind a courier may still work (AssignTask refuses a courier
	// whose account is suspended or deleted, or no longer has the courier role). Nil checks nothing: for
	// a process that admits no user at all (no identity to check tokens against) and for tests.
	Accounts Accounts
	// Events is the service's event feed, which Store writes to; the Service tails it (Run must also run
	// Events.Run, which the caller does).
	Events *eventlog.Log
	// Metrics is nil for none.
	Metrics Metrics
	// ShareKeys keeps the keys that sign share links; nil turns share links off (CreateShareLink is
	// FailedPrecondition and every share token NotFound).
	ShareKeys ShareKeys
}

// NewService returns a Service over d with opts.
func NewService(d Deps, opts Options) *Service {
	setDefault(&opts.OfferTimeout, DefaultOfferTimeout)
	setDefault(&opts.OfferGrace, DefaultOfferGrace)
	setDefault(&opts.MaxWait, DefaultMaxWait)
	setDefault(&opts.SearchRadius, DefaultSearchRadius)
	setDefault(&opts.MaxRadius, DefaultMaxRadius)
	setDefault(&opts.Candidates, DefaultCandidates)
	setDefault(&opts.MaxLocationAge, DefaultMaxLocationAge)
	setDefault(&opts.RetryBackoff, DefaultRetryBackoff)
	setDefault(&opts.MaxRetryBackoff, DefaultMaxRetryBackoff)
	opts.MaxRetryBackoff = max(opts.MaxRetryBackoff, opts.RetryBackoff)
	setDefault(&opts.Lease, DefaultLease)
	setDefault(&opts.Workers, DefaultWorkers)
	setDefault(&opts.Batch, DefaultBatch)
	opts.Batch = min(opts.Batch, MaxBatch)
	setDefault(&opts.Idempotency, DefaultIdempotency)
	setDefault(&opts.TrackInterval, DefaultTrackInterval)
	setDefault(&opts.SessionRate, DefaultSessionRate)
	setDefault(&opts.SessionBurst, DefaultSessionBurst)
	setDefault(&opts.MaxOpenTasks, DefaultMaxOpenTasks)
	setDefault(&opts.AccountSweep, DefaultAccountSweep)
	setUploadDefaults(&opts)
	if opts.Weights == (Weights{}) {
		opts.Weights = DefaultWeights
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Replica == "" {
		opts.Replica = newID()
	}
	s := &Service{
		store:     d.Store,
		uploads:   d.Uploads,
		blobs:     d.Blobs,
		couriers:  d.Couriers,
		accounts:  d.Accounts,
		routes:    d.Routes,
		events:    d.Events,
		now:       opts.Now,
		logger:    opts.Logger,
		opts:      opts,
		metrics:   d.Metrics,
		shareKeys: d.ShareKeys,
		kickCh:    make(chan struct{}, 1),
	}
	s.started = storedTime(s.now())
	if s.metrics == nil {
		s.metrics = NopMetrics{}
	}
	s.hub = newHub(s)
	s.sessionLimits = newSessionLimits(opts.SessionRate, opts.SessionBurst)
	s.engine = NewEngine(d.Couriers, d.Routes, opts)
	return s
}

// Metrics receives dispatch's domain measurements. The adapter implements it with Prometheus; nil
// methods are not called (NopMetrics).
type Metrics interface {
	// OfferSent counts an offer; Assigned observes the time from creation to acceptance.
	OfferSent()
	OfferAnswered(outcome OfferState)
	Assigned(sinceCreate time.Duration)
	Decided(d *Decision)
	SessionOpened()
	SessionClosed()
	Replayed(n int)
	Upload(state string)
	// CourierStreamEnded counts the ends of the courier stream the replica follows (wake.go), opened
	// again after; CourierWoke counts the waiting tasks a courier woke, by reason.
	CourierStreamEnded()
	CourierWoke(reason string, tasks int)
	// AccountSwept measures one account sweep (sweep.go).
	AccountSwept(AccountSweep)
}

// NopMetrics discards every measurement.
type NopMetrics struct{}

func (NopMetrics) OfferSent()                {}
func (NopMetrics) OfferAnswered(OfferState)  {}
func (NopMetrics) Assigned(time.Duration)    {}
func (NopMetrics) Decided(*Decision)         {}
func (NopMetrics) SessionOpened()            {}
func (NopMetrics) SessionClosed()            {}
func (NopMetrics) Replayed(int)              {}
func (NopMetrics) Upload(string)             {}
func (NopMetrics) CourierStreamEnded()       {}
func (NopMetrics) CourierWoke(string, int)   {}
func (NopMetrics) AccountSwept(AccountSweep) {}

// newID returns a UUIDv7, so ids sort in creation order.
func newID() string { return uuid.Must(uuid.NewV7()).String() }

// storedTime returns t as stores keep it: in UTC, to the microsecond; the zero time stays zero.
func storedTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// etag renders a version as an etag: a quoted decimal, opaque to clients.
func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

// checkETag returns Aborted when want is set and is not t's etag.
func checkETag(t Task, want string) error {
	if want == "" {
		return nil
	}
	if strings.TrimSpace(want) != t.ETag() {
		return apperr.Errorf(apperr.Aborted, "task %s changed since it was read (etag %s, now %s)", t.ID, want, t.ETag())
	}
	return nil
}

// retried reports whether want, an etag t no longer has, is the one t had right before its last write, and
// own recognizes that write's history entry as the effect of the call being retried: a call whose answer
// was lost and that is sent again with the etag it first sent. Nothing else changed t since that etag, and
// t is as the call asked, so the retry succeeds with t as it is; any other change in between (another
// caller's, or a later one) still fails the etag.
func retried(t Task, want string, own func(StateChange) bool) bool {
	want = strings.TrimSpace(want)
	v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(want, `"`), `"`), 10, 64)
	if err != nil || etag(v) != want || t.Version != v+1 || len(t.History) == 0 {
		return false
	}
	return own(t.History[len(t.History)-1])
}

func setDefault[T int | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// kick wakes the work loop: a task became due.
func (s *Service) kick() {
	select {
	case s.kickCh <- struct{}{}:
	default:
	}
}
