package bench_test

// Dispatch under open-loop load: how many assignments (offers sent) per second dispatch sustains, and how
// long a task waits from CreateTask returning to its offer, with the courier and route services real and
// in-process.
//
// The system, built once per measured phase on a fresh database:
//
//   - courier: courier.Service on its SQLite or PostgreSQL store, behind grpcserver with the full
//     interceptor chain and courier's policy, served on bufconn (grpctest.NewServer), authenticating
//     callers from metadata (grpctest.HeaderAuthenticator) instead of mTLS;
//   - route: route.Service with the geodesic provider, behind the same chain, on bufconn;
//   - dispatch: dispatch.Service on its store (the same engine as courier), its event feed, River jobs for
//     claims, reaching courier and route through courierclient and routeclient over those connections,
//     calling as the "dispatch" service.
//
// Couriers are registered through courier's API, set AVAILABLE, and given a fresh fix within 5 km of one
// city center; each opens a real dispatch session (dispatch.Service.OpenSession, the domain side of
// StreamAssignments, without the gRPC stream) and accepts every offer it receives at once, then
// acknowledges it. Customers create tasks through dispatch.Service.CreateTask (in-process, not through
// dispatch's own gRPC server) at a fixed rate set by a schedule, not by completions (open loop): the
// schedule hands each task's intended start to one of many customer goroutines.
//
// The phases also count dispatch's jobs completed in the window (the courier claims that follow the
// accepts): a saturated rate is one the system sustains only when the claims keep up with it.
//
// Two times are taken per task: "committed", when the transaction that turned the task OFFERED committed
// (a wrapper around dispatch.Store's UpdateTask observes it), and "received", when the courier's session
// returned the offer from Next. Both are measured from CreateTask returning. The latency phase also splits
// "committed" into stages (wrappers around LeaseDue and UpdateTasks observe them): the wake-up until the
// lease that took the task began, the lease, the decisions, and the write transaction; it reports each
// stage's p50 and p99 and its mean over the slowest 1% of the tasks.
//
// The test runs only with LASTMILE_DISPATCH_LOAD=1 (it takes a minute or more per engine):
//
//	LASTMILE_DISPATCH_LOAD=1 go test -run TestDispatchLoad -v -timeout 30m ./bench/
//
// Other knobs (environment): LASTMILE_DISPATCH_LOAD_ENGINES ("sqlite,postgres"; postgres needs
// LASTMILE_TEST_POSTGRES_DSN), LASTMILE_DISPATCH_LOAD_COURIERS (1000), LASTMILE_DISPATCH_LOAD_SATURATE
// (the offered rate of the saturation phase, 3000/s), LASTMILE_DISPATCH_LOAD_RATE (the rate of the latency
// phase; default half the measured saturated rate), LASTMILE_DISPATCH_LOAD_PHASES ("saturation,latency";
// name one to run it alone), LASTMILE_DISPATCH_LOAD_BACKLOG (64: during the saturation phase at most this
// many tasks wait for their offer, and customers hold back beyond it, so that the queue, not its growth,
// is measured; "unbounded" for a pure open loop, where the backlog grows without bound),
// LASTMILE_DISPATCH_LOAD_WORKERS (dispatch's
// Options.Workers; default dispatch's own), LASTMILE_DISPATCH_LOAD_JOB_WORKERS (dispatch's job workers,
// the claims and releases run at once; default serve's, jobargs.DefaultWorkers), LASTMILE_DISPATCH_LOAD_SECONDS (10, each phase's measured
// window), LASTMILE_DISPATCH_LOAD_LOG (1: dispatch's warnings to stderr), LASTMILE_DISPATCH_LOAD_ABLATE (a
// comma list of parts to leave out, to measure what they cost an assignment: "transport", dispatch calls
// courier's and route's handlers as functions instead of over gRPC; "jobs", the accepts enqueue no claim
// jobs; neither is something production may do), LASTMILE_DISPATCH_LOAD_KEEP (a file name: the sqlite
// engine's dispatch database is copied there, VACUUM INTO, at the end of the saturation phase). The
// saturation phase ends with what the database holds: its size, its tasks and decisions, the decisions'
// bytes.
// The garbage collector runs at serve's GOGC (cli.DefaultGCPercent) unless the environment sets GOGC.

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/cli"
	"lastmile/internal/courier"
	"lastmile/internal/courier/couriertest"
	couriergrpc "lastmile/internal/courier/grpcapi"
	courierpg "lastmile/internal/courier/postgres"
	couriersqlite "lastmile/internal/courier/sqlite"
	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/blob"
	"lastmile/internal/dispatch/courierclient"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/dispatch/jobargs"
	dispatchpg "lastmile/internal/dispatch/postgres"
	"lastmile/internal/dispatch/routeclient"
	dispatchsqlite "lastmile/internal/dispatch/sqlite"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/geo"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/cputime"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
	"lastmile/internal/platform/jobs"
	"lastmile/internal/route"
	"lastmile/internal/route/geodesic"
	routegrpc "lastmile/internal/route/grpcapi"
)

// envLoad gates TestDispatchLoad.
const envLoad = "LASTMILE_DISPATCH_LOAD"

// Fixed shape of the load.
const (
	courierCapacity = 10
	// customers is how many goroutines create tasks: enough that a slow CreateTask delays the schedule
	// only when all of them are busy.
	customers = 64
	// cityRadius bounds couriers' and pickups' distance from the center, in meters.
	cityRadius = 5000.0
	// loadWarmUp is the part of each phase not measured: the queue, pools and caches settle.
	loadWarmUp = 3 * time.Second
	// drainWait bounds how long the latency phase waits for its last tasks' offers (a hang guard).
	drainWait = 60 * time.Second
)

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// TestDispatchLoad measures, per store engine, the saturated assignment rate (phase 1: tasks offered far
// above what dispatch can take) and the latency from CreateTask to the offer at a lower fixed rate (phase
// 2: half the saturated rate unless LASTMILE_DISPATCH_LOAD_RATE says otherwise), each on a fresh system.
func TestDispatchLoad(t *testing.T) {
	if os.Getenv(envLoad) != "1" {
		t.Logf("%s is not 1: the dispatch load test does not run (it takes minutes)", envLoad)
		return
	}
	engines := strings.Split(cmp.Or(os.Getenv("LASTMILE_DISPATCH_LOAD_ENGINES"), "sqlite,postgres"), ",")
	phases := strings.Split(cmp.Or(os.Getenv("LASTMILE_DISPATCH_LOAD_PHASES"), "saturation,latency"), ",")
	cfg := loadConfig{
		couriers:   envInt(t, "LASTMILE_DISPATCH_LOAD_COURIERS", 1000),
		saturate:   envInt(t, "LASTMILE_DISPATCH_LOAD_SATURATE", 3000),
		rate:       envIntZero("LASTMILE_DISPATCH_LOAD_RATE"),
		workers:    envIntZero("LASTMILE_DISPATCH_LOAD_WORKERS"),
		jobWorkers: envIntZero("LASTMILE_DISPATCH_LOAD_JOB_WORKERS"),
		backlog:    envBacklog(t),
		window:     time.Duration(envInt(t, "LASTMILE_DISPATCH_LOAD_SECONDS", 10)) * time.Second,
		ablate:     os.Getenv("LASTMILE_DISPATCH_LOAD_ABLATE"),
	}
	for _, a := range strings.Split(cfg.ablate, ",") {
		if !slices.Contains([]string{"", ablateTransport, ablateJobs}, a) {
			t.Fatalf("LASTMILE_DISPATCH_LOAD_ABLATE=%q: want a comma list of %s and %s, or nothing", cfg.ablate, ablateTransport, ablateJobs)
		}
	}
	// The collector runs as serve runs it (cli.DefaultGCPercent) unless GOGC says otherwise.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(cli.DefaultGCPercent))
	}
	gogc := debug.SetGCPercent(-1)
	debug.SetGCPercent(gogc)
	t.Logf("nproc %d, GOMAXPROCS %d, GOGC %d, %s, %d couriers (capacity %d), %d customers, dispatch workers %d (0: default %d), left out: %q",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), gogc, runtime.Version(), cfg.couriers, courierCapacity, customers, cfg.workers, dispatch.DefaultWorkers, cfg.ablate)
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			if engine == "postgres" && os.Getenv("LASTMILE_TEST_POSTGRES_DSN") == "" {
				t.Fatal("the postgres engine needs LASTMILE_TEST_POSTGRES_DSN (see databasetest)")
			}
			sat := cfg.saturate
			if slices.Contains(phases, "saturation") {
				res := runPhase(t, engine, cfg, float64(cfg.saturate), false)
				t.Logf("%s saturation: %s", engine, res)
				sat = int(res.offersPerSec)
			}
			if !slices.Contains(phases, "latency") {
				return
			}
			rate := cfg.rate
			if rate == 0 {
				rate = max(sat/2, 1)
			}
			res := runPhase(t, engine, cfg, float64(rate), true)
			t.Logf("%s latency at %d/s: %s", engine, rate, res)
		})
	}
}

func envBacklog(t *testing.T) int {
	if os.Getenv("LASTMILE_DISPATCH_LOAD_BACKLOG") == "unbounded" {
		return 0
	}
	return envInt(t, "LASTMILE_DISPATCH_LOAD_BACKLOG", 64)
}

func envIntZero(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return max(n, 0)
}

type loadConfig struct {
	couriers, saturate, rate, workers, backlog int
	jobWorkers                                 int // dispatch's job workers; 0: jobargs.DefaultWorkers, as serve
	window                                     time.Duration
	ablate                                     string // LASTMILE_DISPATCH_LOAD_ABLATE: what the phase leaves out (ablateTransport, ablateJobs)
}

// The ablations: measurements of what a part of the system costs an assignment, by leaving it out. Neither
// is something production may do.
const (
	// ablateTransport: dispatch calls courier's and route's handlers in process (inproc), not over gRPC.
	ablateTransport = "transport"
	// ablateJobs: the accepts enqueue no jobs, so no River job and no ClaimCourier call follows an accept
	// (courier never learns of the claims: its couriers keep their free capacity).
	ablateJobs = "jobs"
)

func (c loadConfig) ablated(part string) bool {
	return slices.Contains(strings.Split(c.ablate, ","), part)
}

// phaseResult is what one phase measured.
type phaseResult struct {
	offeredRate  float64
	backlog      int // the bound on tasks waiting for their first offer; 0 for none
	window       time.Duration
	created      int // tasks created in the measured window
	createLagP99 time.Duration
	offersPerSec float64 // offers committed per second in the measured window
	claimsPerSec float64 // dispatch's jobs (courier claims) completed per second in the measured window
	cpuPerOffer  time.Duration
	pgPerOffer   time.Duration // CPU of the PostgreSQL server's processes per offer (postgres engine)
	allocsPer    float64
	committed    []time.Duration // CreateTask returned -> offer committed, tasks created in the window
	received     []time.Duration // CreateTask returned -> session received the offer
	unoffered    int             // tasks of the window never offered within drainWait (latency phase)
	decide       []time.Duration // the engine's time per first decision (Decision.Elapsed: the queries and RPCs it made itself; a batch's shared first searches, reads and matrix are made before it and not included)
	stages       stageReport     // where create->commit went, per stage
	createP50    time.Duration
	createP99    time.Duration

	// SQLite's one writer over the window (sqlstore.Store.WriterStats): how long dispatch's group commit
	// held it per offer, and its transactions and functions per offer; zero on PostgreSQL.
	writerPerOffer, writerCPUPerOffer time.Duration
	writerTxPer, writerFnPer          float64
	writtenPerOffer                   float64   // bytes the process passed to write calls (SQLite's WAL and checkpoints)
	size                              storeSize // what the database holds at the end (saturation phase)
}

func (r phaseResult) String() string {
	lag := fmt.Sprintf("schedule lag p99 %v", r.createLagP99)
	if r.backlog > 0 {
		lag = fmt.Sprintf("at most %d waiting", r.backlog) // the schedule runs ahead on purpose
	}
	s := fmt.Sprintf("offered %.0f/s, created %.0f/s in the window (%s; CreateTask p50 %v p99 %v), offers committed %.0f/s (claims completed %.0f/s), CPU %v/offer (+ postgres server %v), %.0f allocs/offer",
		r.offeredRate, float64(r.created)/r.window.Seconds(), lag, r.createP50, r.createP99, r.offersPerSec, r.claimsPerSec, r.cpuPerOffer, r.pgPerOffer, r.allocsPer)
	if r.writerPerOffer > 0 {
		s += fmt.Sprintf(", writer held %v/offer, its CPU %v/offer (%.2f transactions, %.1f functions per offer)", r.writerPerOffer, r.writerCPUPerOffer,
			r.writerTxPer, r.writerFnPer)
	}
	if r.writtenPerOffer > 0 {
		s += fmt.Sprintf(", %.1f kB written/offer", r.writtenPerOffer/1000)
	}
	if r.size.tasks > 0 {
		s += "; " + r.size.String()
	}
	if len(r.committed) > 0 {
		s += fmt.Sprintf("; create->commit p50 %v p99 %v max %v; create->session p50 %v p99 %v max %v (n=%d, unoffered %d)",
			pct(r.committed, 50), pct(r.committed, 99), pct(r.committed, 100),
			pct(r.received, 50), pct(r.received, 99), pct(r.received, 100), len(r.committed), r.unoffered)
		s += fmt.Sprintf("; engine decision p50 %v p99 %v", pct(r.decide, 50), pct(r.decide, 99))
		s += "; " + r.stages.String()
	}
	return s
}

// stageTimes are the times of the lease and the write that made a task OFFERED the first time.
type stageTimes struct {
	leaseBegin, leaseEnd, writeBegin time.Time
	batch                            int // tasks leased together
}

// stageNames name the parts of create->commit: from CreateTask returning to the lease that took the
// task starting (the work loop's wake-up, a free worker), the lease statement, the decisions (searches,
// reads, matrix, Decide), and the batch's write transaction up to its commit.
var stageNames = [...]string{"wake", "lease", "decide", "write"}

// stageReport is the breakdown of create->commit over a window's tasks: each stage's p50 and p99, and
// its mean over the slowest 1% of the tasks (by create->commit), with their mean batch size.
type stageReport struct {
	p50, p99, slow [len(stageNames)]time.Duration
	slowBatch      float64
	n              int
}

func (r stageReport) String() string {
	if r.n == 0 {
		return "stages: none"
	}
	var parts []string
	for i, name := range stageNames {
		parts = append(parts, fmt.Sprintf("%s %v/%v/%v", name, r.p50[i], r.p99[i], r.slow[i]))
	}
	return fmt.Sprintf("stages p50/p99/mean of slowest 1%%: %s; slowest 1%% batch %.1f", strings.Join(parts, ", "), r.slowBatch)
}

// stageSplit returns the four stages of a task created (CreateTask returned) at created and committed
// at committed; a stage that began before CreateTask returned counts from then.
func stageSplit(created, committed time.Time, st stageTimes) [len(stageNames)]time.Duration {
	at := []time.Time{created, st.leaseBegin, st.leaseEnd, st.writeBegin, committed}
	var out [len(stageNames)]time.Duration
	for i := range out {
		from := at[i]
		if from.Before(created) {
			from = created
		}
		out[i] = max(at[i+1].Sub(from), 0)
	}
	return out
}

// stageBreakdown computes the stageReport of the tasks with ids that were committed.
func (r *recorder) stageBreakdown(ids []string) stageReport {
	type one struct {
		total time.Duration
		parts [len(stageNames)]time.Duration
		batch int
	}
	var all []one
	for _, id := range ids {
		tt := r.tasks[id]
		st, ok := r.offered[id]
		if tt == nil || !ok || tt.committed.IsZero() || st.leaseBegin.IsZero() || st.writeBegin.IsZero() {
			continue
		}
		all = append(all, one{total: tt.committed.Sub(tt.created), parts: stageSplit(tt.created, tt.committed, st), batch: st.batch})
	}
	var rep stageReport
	rep.n = len(all)
	if rep.n == 0 {
		return rep
	}
	for i := range stageNames {
		ds := make([]time.Duration, len(all))
		for j, o := range all {
			ds[j] = o.parts[i]
		}
		rep.p50[i], rep.p99[i] = pct(ds, 50), pct(ds, 99)
	}
	slices.SortFunc(all, func(a, b one) int { return cmp.Compare(b.total, a.total) })
	slow := all[:max(len(all)/100, 1)]
	for _, o := range slow {
		for i := range stageNames {
			rep.slow[i] += o.parts[i]
		}
		rep.slowBatch += float64(o.batch)
	}
	for i := range stageNames {
		rep.slow[i] = (rep.slow[i] / time.Duration(len(slow))).Round(10 * time.Microsecond)
	}
	rep.slowBatch /= float64(len(slow))
	return rep
}

// pct returns the p-th percentile (nearest rank) of ds, sorted in place.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p/100+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)].Round(10 * time.Microsecond)
}

// taskTimes are one task's timestamps.
type taskTimes struct {
	created, committed, received time.Time
}

// recorder keeps every task's times.
type recorder struct {
	mu      sync.Mutex
	tasks   map[string]*taskTimes
	offers  atomic.Int64         // offers committed
	pending map[string]time.Time // commits seen before CreateTask returned to its caller
	// early holds offers a session received before CreateTask returned to its caller (the customer's
	// goroutine may wait for a core longer than the whole pipeline takes): without it such a task would
	// count as never offered.
	early map[string]time.Time
	// slots, when not nil, bounds the tasks created and not yet offered: a customer takes a slot before
	// creating a task, and the task's first offer gives it back.
	slots chan struct{}
	// stages are each task's latest lease and write; offered keeps them as they were at its first offer.
	stages  map[string]stageTimes
	offered map[string]stageTimes
}

// leased records that the tasks with ids were leased together from begin to end.
func (r *recorder) leased(ids []string, begin, end time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		r.stages[id] = stageTimes{leaseBegin: begin, leaseEnd: end, batch: len(ids)}
	}
}

// writing records that a write of the tasks with ids began at begin.
func (r *recorder) writing(ids []string, begin time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		st := r.stages[id]
		st.writeBegin = begin
		r.stages[id] = st
	}
}

// release gives a slot back after a task's first offer.
func (r *recorder) release() {
	if r.slots == nil {
		return
	}
	select {
	case <-r.slots:
	default:
	}
}

func newRecorder() *recorder {
	return &recorder{tasks: map[string]*taskTimes{}, pending: map[string]time.Time{}, early: map[string]time.Time{},
		stages: map[string]stageTimes{}, offered: map[string]stageTimes{}}
}

func (r *recorder) created(id string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tt := &taskTimes{created: at}
	if c, ok := r.pending[id]; ok {
		tt.committed = c
		delete(r.pending, id)
	}
	if rc, ok := r.early[id]; ok {
		tt.received = rc
		delete(r.early, id)
	}
	r.tasks[id] = tt
}

func (r *recorder) committed(id string, at time.Time) {
	r.offers.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.offered[id]; !ok {
		r.offered[id] = r.stages[id]
	}
	if tt, ok := r.tasks[id]; ok {
		if tt.committed.IsZero() {
			tt.committed = at
			r.release()
		}
		return
	}
	if _, ok := r.pending[id]; !ok {
		r.pending[id] = at
		r.release()
	}
}

func (r *recorder) received(id string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if tt, ok := r.tasks[id]; ok {
		if tt.received.IsZero() {
			tt.received = at
		}
		return
	}
	if _, ok := r.early[id]; !ok {
		r.early[id] = at
	}
}

// timedStore observes the commits that make a task OFFERED.
type timedStore struct {
	dispatch.Store
	rec *recorder
}

func (s timedStore) UpdateTask(ctx context.Context, id string, fn func(dispatch.Task) (dispatch.Change, error)) (dispatch.Task, error) {
	offered := false
	out, err := s.Store.UpdateTask(ctx, id, func(cur dispatch.Task) (dispatch.Change, error) {
		ch, err := fn(cur)
		offered = err == nil && cur.State != dispatch.StateOffered && ch.Task.State == dispatch.StateOffered
		return ch, err
	})
	if err == nil && offered {
		s.rec.committed(id, time.Now())
	}
	return out, err
}

// UpdateTasks observes the commits of a batch's writes that make a task OFFERED, as UpdateTask does.
func (s timedStore) UpdateTasks(ctx context.Context, updates []dispatch.TaskWrite) ([]dispatch.Task, []error) {
	offered := make([]bool, len(updates))
	wrapped := make([]dispatch.TaskWrite, len(updates))
	for i, u := range updates {
		wrapped[i] = dispatch.TaskWrite{ID: u.ID, Fn: func(cur dispatch.Task) (dispatch.Change, error) {
			ch, err := u.Fn(cur)
			offered[i] = err == nil && cur.State != dispatch.StateOffered && ch.Task.State == dispatch.StateOffered
			return ch, err
		}}
	}
	ids := make([]string, len(updates))
	for i, u := range updates {
		ids[i] = u.ID
	}
	s.rec.writing(ids, time.Now())
	out, errs := s.Store.UpdateTasks(ctx, wrapped)
	now := time.Now()
	for i, u := range updates {
		if errs[i] == nil && offered[i] {
			s.rec.committed(u.ID, now)
		}
	}
	return out, errs
}

// LeaseDue observes when each task was leased, and with how many others.
func (s timedStore) LeaseDue(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]dispatch.Task, error) {
	begin := time.Now()
	ts, err := s.Store.LeaseDue(ctx, owner, now, lease, limit)
	if len(ts) > 0 {
		ids := make([]string, len(ts))
		for i, t := range ts {
			ids[i] = t.ID
		}
		s.rec.leased(ids, begin, time.Now())
	}
	return ts, err
}

// loadSystem is one measured system.
type loadSystem struct {
	svc    *dispatch.Service
	store  dispatch.Store
	writer func() database.GroupStats // the store's WriterStats
	// claimed counts dispatch's River jobs completed so far (the claims that follow accepts, and any
	// release), so that the phase can say whether they kept up with the offers.
	claimed func(context.Context) (int64, error)
	// size measures what dispatch's database holds (storeSize).
	size func(context.Context) (storeSize, error)
	// keep copies dispatch's database (SQLite) to a new file (LASTMILE_DISPATCH_LOAD_KEEP).
	keep     func(ctx context.Context, path string) error
	rec      *recorder
	couriers []string // courier ids
	users    []string // their user ids
}

var dispatchService = auth.Principal{Kind: auth.Service, Subject: "dispatch"}

// asDispatch adds dispatch's service identity to every call of a connection, as its mTLS certificate
// does in production.
func asDispatch() grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(grpctest.CallAs(ctx, dispatchService), method, req, reply, cc, opts...)
	})
}

// startLoadSystem starts courier, route and dispatch on fresh databases of engine and registers the
// couriers; it stops everything when the test ends.
func startLoadSystem(t *testing.T, engine string, cfg loadConfig) *loadSystem {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	dlog := quiet
	if os.Getenv("LASTMILE_DISPATCH_LOAD_LOG") == "1" {
		dlog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}

	// courier
	var cstore courier.Store
	var dpool *pgxpool.Pool
	switch engine {
	case "sqlite":
		db := databasetest.SQLite(t)
		if err := database.MigrateSQLite(ctx, db, couriersqlite.Migrations()); err != nil {
			t.Fatal(err)
		}
		cstore = couriersqlite.New(db)
	case "postgres":
		pool := databasetest.Postgres(t, "courier")
		if err := database.MigratePostgres(ctx, pool, courierpg.Migrations()); err != nil {
			t.Fatal(err)
		}
		s := courierpg.New(pool)
		t.Cleanup(func() { _ = s.Close() })
		cstore = s
		dpool = databasetest.Postgres(t, dispatchpg.Schema)
	default:
		t.Fatalf("unknown engine %q (want sqlite or postgres)", engine)
	}
	users := couriertest.NewUsers()
	ls := &loadSystem{rec: newRecorder()}
	for range cfg.couriers {
		u := uuid.NewString()
		ls.users = append(ls.users, u)
		users.Put(courier.UserInfo{ID: u, Role: auth.RoleCourier, Status: courier.UserActive, DisplayName: "Courier " + u[:8]})
	}
	csvc := courier.NewService(cstore, users, courier.Options{Logger: quiet})
	if err := csvc.Load(ctx); err != nil {
		t.Fatal(err)
	}
	clis := serve(t, grpcserver.Config{Policy: couriergrpc.Policy(), Authenticator: grpctest.HeaderAuthenticator{}, Logger: quiet},
		func(s *grpc.Server) { couriergrpc.Register(s, couriergrpc.NewServer(csvc)) })
	grpctest.Go(t, "courier.Service.Run", csvc.Run)

	// route
	prov, err := geodesic.New(geodesic.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rsvc := route.NewService(prov, route.Options{})
	rlis := serve(t, grpcserver.Config{Policy: routegrpc.Policy(), Authenticator: grpctest.HeaderAuthenticator{}, Logger: quiet},
		func(s *grpc.Server) { routegrpc.Register(s, routegrpc.NewServer(rsvc)) })

	// dispatch's own connections carry its identity
	capi := courierv1.NewCourierServiceClient(grpctest.Dial(t, clis))
	var cconn, rconn grpc.ClientConnInterface = grpctest.Dial(t, clis, asDispatch()), grpctest.Dial(t, rlis, asDispatch())
	if cfg.ablated(ablateTransport) {
		ci, ri := newInproc(dispatchService, cconn), newInproc(dispatchService, rconn)
		couriergrpc.Register(ci, couriergrpc.NewServer(csvc))
		routegrpc.Register(ri, routegrpc.NewServer(rsvc))
		cconn, rconn = ci, ri
	}
	couriers := courierclient.New(courierv1.NewCourierServiceClient(cconn))
	routes := routeclient.New(routev1.NewRouteServiceClient(rconn), routeclient.Options{Logger: quiet})

	ls.registerCouriers(t, ctx, capi)

	// dispatch
	var (
		store   *sqlstore.Store
		dialect = database.SQLite
		wake    func(context.Context, eventlog.Backoff, func())
	)
	if dpool != nil {
		if err := dispatchpg.Migrate(ctx, dpool); err != nil {
			t.Fatal(err)
		}
		store, dialect, wake = dispatchpg.New(dpool), database.Postgres, sqllog.Listener(dpool)
		t.Cleanup(func() { _ = store.Close() })
	} else {
		db := databasetest.SQLite(t)
		if err := dispatchsqlite.Migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
		store = dispatchsqlite.New(db)
	}
	db := store.DB()
	feed, err := eventlog.New(sqllog.NewSource(db, dialect), eventlog.Options{Poll: 100 * time.Millisecond, Wake: wake})
	if err != nil {
		t.Fatal(err)
	}
	store.SetNudge(feed.Nudge)
	var svc *dispatch.Service
	jopts := jobs.Options{Workers: jobargs.Workers(func(ctx context.Context, j dispatch.Job) error { return svc.RunJob(ctx, j) }, jobargs.RetryPolicy{}, nil),
		StopTimeout: 5 * time.Second, RetryPolicy: jobargs.RetryPolicy{}}
	jopts.Queues = jobargs.Queues(cmp.Or(cfg.jobWorkers, jobargs.DefaultWorkers))
	if dpool != nil {
		jopts.Listener, jopts.Schema = dpool, dispatchpg.Schema
	}
	jc, err := jobs.New(db, dialect, jopts)
	if err != nil {
		t.Fatal(err)
	}
	store.SetJobs(sqlstore.RiverJobs(jc))
	if cfg.ablated(ablateJobs) {
		store.SetJobs(func(context.Context, *sql.Tx, []dispatch.Job) error { return nil })
	}
	blobs, err := blob.NewFiles(filepath.Join(t.TempDir(), blob.DefaultDir))
	if err != nil {
		t.Fatal(err)
	}
	svc = dispatch.NewService(dispatch.Deps{Store: timedStore{Store: store, rec: ls.rec}, Uploads: store.Uploads(), Blobs: blobs, Couriers: couriers, Routes: routes, Events: feed},
		dispatch.Options{Logger: dlog, Workers: cfg.workers})
	ls.svc, ls.store, ls.writer = svc, store, store.WriterStats
	ls.claimed = func(ctx context.Context) (int64, error) {
		var n int64
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM river_job WHERE state = 'completed'`).Scan(&n)
		return n, err
	}
	ls.size = func(ctx context.Context) (storeSize, error) { return measureStore(ctx, db, dialect) }
	ls.keep = func(ctx context.Context, path string) error {
		if dialect != database.SQLite {
			return fmt.Errorf("LASTMILE_DISPATCH_LOAD_KEEP: only the sqlite engine's database can be kept")
		}
		_, err := db.ExecContext(ctx, `VACUUM INTO $1`, path)
		return err
	}
	grpctest.Go(t, "event feed", feed.Run)
	grpctest.Go(t, "jobs", jc.Run)
	grpctest.Go(t, "dispatch.Service.Run", svc.Run)

	ls.openSessions(t, ctx)
	return ls
}

// serve serves a grpcserver.Server (the full interceptor chain) configured by cfg on a new in-memory
// listener until the test ends, and returns the listener for grpctest.Dial.
func serve(t *testing.T, cfg grpcserver.Config, register func(*grpc.Server)) *bufconn.Listener {
	t.Helper()
	lis := grpctest.Listen()
	cfg.Listener = lis
	srv, err := grpcserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	register(srv.GRPC())
	grpctest.Serve(t, srv)
	return lis
}

// registerCouriers registers the couriers (half bicycles, half cars), makes them AVAILABLE and reports a
// fresh fix for each within cityRadius of the center.
func (ls *loadSystem) registerCouriers(t *testing.T, ctx context.Context, api courierv1.CourierServiceClient) {
	t.Helper()
	staff := grpctest.CallAs(ctx, auth.Principal{Kind: auth.User, Subject: uuid.NewString(), Roles: []string{auth.RoleDispatcher}})
	rng := rand.New(rand.NewPCG(1, 2))
	points := make([]geo.LatLng, len(ls.users))
	for i := range points {
		points[i] = randomPoint(rng)
	}
	simulator := grpctest.CallAs(ctx, auth.Principal{Kind: auth.Service, Subject: "simulator"})
	ids := make([]string, len(ls.users))
	var wg sync.WaitGroup
	errs := make(chan error, len(ls.users))
	sem := make(chan struct{}, 16)
	for i, u := range ls.users {
		mode := geov1.TransportMode_TRANSPORT_MODE_BICYCLE
		if i%2 == 1 {
			mode = geov1.TransportMode_TRANSPORT_MODE_CAR
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := api.RegisterCourier(staff, &courierv1.RegisterCourierRequest{UserId: u, TransportMode: mode, Capacity: courierCapacity})
			if err != nil {
				errs <- fmt.Errorf("register courier %d: %w", i, err)
				return
			}
			if _, err := api.SetStatus(staff, &courierv1.SetStatusRequest{CourierId: c.GetId(), Status: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE}); err != nil {
				errs <- fmt.Errorf("set courier %d available: %w", i, err)
				return
			}
			// A stream carries one courier's fixes; the simulator's identity may report for any courier.
			stream, err := api.ReportLocations(simulator)
			if err != nil {
				errs <- fmt.Errorf("report courier %d's fix: %w", i, err)
				return
			}
			p := points[i]
			fix := &courierv1.LocationFix{Location: &geov1.LatLng{Latitude: p.Lat, Longitude: p.Lng}, RecordedAt: timestamppb.Now(), AccuracyMeters: 5}
			if err := stream.Send(&courierv1.ReportLocationsRequest{CourierId: c.GetId(), Fixes: []*courierv1.LocationFix{fix}}); err != nil {
				errs <- fmt.Errorf("report courier %d's fix: %w", i, err)
				return
			}
			if res, err := stream.CloseAndRecv(); err != nil || res.GetAcceptedCount() != 1 {
				errs <- fmt.Errorf("report courier %d's fix = %v, %v; want 1 accepted", i, res, err)
				return
			}
			ids[i] = c.GetId()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ls.couriers = ids
}

// randomPoint returns a point uniformly within cityRadius of the center.
func randomPoint(rng *rand.Rand) geo.LatLng {
	for {
		x, y := rng.Float64()*2-1, rng.Float64()*2-1
		if x*x+y*y <= 1 {
			c := dispatchtest.Berlin
			return geo.LatLng{Lat: c.Lat + y*cityRadius/111_195, Lng: c.Lng + x*cityRadius/(111_195*0.6088)}
		}
	}
}

// openSessions opens every courier's dispatch session; each accepts every offer at once and acknowledges
// it, until the test ends.
func (ls *loadSystem) openSessions(t *testing.T, ctx context.Context) {
	t.Helper()
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	for _, u := range ls.users {
		sess, err := ls.svc.OpenSession(dispatchtest.CourierUser(u), dispatch.Hello{})
		if err != nil {
			t.Fatalf("open session of %s: %v", u, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sess.Close()
			cctx := auth.WithPrincipal(runCtx, auth.FromContext(dispatchtest.CourierUser(u)))
			for {
				out, err := sess.Next(cctx)
				if err != nil {
					if runCtx.Err() == nil {
						t.Errorf("session of %s: %v", u, err)
					}
					return
				}
				if out.Offer != nil {
					ls.rec.received(out.Offer.Task.ID, time.Now())
					res := sess.Execute(cctx, "accept-"+out.Offer.Offer.ID, dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: out.Offer.Offer.ID}})
					if res.Err != nil && runCtx.Err() == nil {
						t.Logf("accept %s: %+v", out.Offer.Offer.ID, *res.Err)
					}
				}
				if out.Cursor > 0 {
					if err := sess.Ack(cctx, out.Cursor); err != nil && runCtx.Err() == nil {
						t.Errorf("ack of %s: %v", u, err)
						return
					}
				}
			}
		}()
	}
}

// runPhase starts a fresh system, creates tasks at rate for loadWarmUp + cfg.window, and measures the window.
// With latency set it then waits for the window's tasks to be offered and returns their times.
func runPhase(t *testing.T, engine string, cfg loadConfig, rate float64, latency bool) phaseResult {
	t.Helper()
	var res phaseResult
	backlog := 0
	if !latency {
		backlog = cfg.backlog
	}
	if !t.Run(fmt.Sprintf("rate=%.0f,backlog=%d", rate, backlog), func(t *testing.T) {
		ls := startLoadSystem(t, engine, cfg)
		if backlog > 0 {
			ls.rec.slots = make(chan struct{}, backlog)
		}
		res = ls.drive(t, rate, cfg.window, latency)
		res.backlog = backlog
		if res.unoffered > 0 {
			t.Errorf("%d tasks of the window were not offered within %v", res.unoffered, drainWait)
		}
	}) {
		t.FailNow()
	}
	return res
}

// describeMissing logs, for the first tasks of ids never offered or never received, what the recorder
// saw and what the store holds, so that a failed latency phase says where each task stopped.
func (ls *loadSystem) describeMissing(t *testing.T, ids []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shown := 0
	for _, id := range ids {
		ls.rec.mu.Lock()
		tt := *ls.rec.tasks[id]
		ls.rec.mu.Unlock()
		if (!tt.committed.IsZero() && !tt.received.IsZero()) || shown == 5 {
			continue
		}
		shown++
		task, err := ls.store.GetTask(ctx, id)
		if err != nil {
			t.Logf("task %s not offered (committed %v, received %v): read it: %v", id, !tt.committed.IsZero(), !tt.received.IsZero(), err)
			continue
		}
		var offers []string
		for _, o := range task.Offers {
			offers = append(offers, fmt.Sprintf("%s to %s %s", o.ID, o.CourierID, o.State))
		}
		t.Logf("task %s not offered (committed %v, received %v): state %s, courier %q, due %v, version %d, offers %v, excluded %d",
			id, !tt.committed.IsZero(), !tt.received.IsZero(), task.State, task.CourierID, task.DueTime, task.Version, offers, len(task.Excluded))
	}
}

func (ls *loadSystem) drive(t *testing.T, rate float64, window time.Duration, latency bool) phaseResult {
	res := phaseResult{offeredRate: rate, window: window}
	rng := rand.New(rand.NewPCG(3, 4))
	total := int((loadWarmUp + window).Seconds() * rate)
	type job struct {
		n  int
		at time.Time
		p  geo.LatLng
	}
	jobs := make(chan job, total)
	var (
		mu       sync.Mutex
		lags     []time.Duration
		creates  []time.Duration
		windowID []string
	)
	start := time.Now().Add(50 * time.Millisecond)
	measureFrom := start.Add(loadWarmUp)
	measureTo := measureFrom.Add(window)
	var wg sync.WaitGroup
	for range customers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cust := uuid.NewString()
			ctx := dispatchtest.Customer(cust)
			for j := range jobs {
				time.Sleep(time.Until(j.at))
				if ls.rec.slots != nil {
					if !time.Now().Before(measureTo) {
						continue // the window is over: the rest of the schedule is dropped
					}
					ls.rec.slots <- struct{}{}
				}
				begin := time.Now()
				tk, err := ls.svc.CreateTask(ctx, dispatchtest.Request(fmt.Sprintf("load-%d", j.n), j.p, ""))
				done := time.Now()
				if err != nil {
					t.Errorf("create task %d: %v", j.n, err)
					continue
				}
				ls.rec.created(tk.ID, done)
				// Tasks belong to the window by when their CreateTask began (with a bounded backlog the
				// schedule runs ahead of the creations).
				if !begin.Before(measureFrom) && begin.Before(measureTo) {
					mu.Lock()
					lags = append(lags, begin.Sub(j.at))
					creates = append(creates, done.Sub(begin))
					windowID = append(windowID, tk.ID)
					mu.Unlock()
				}
			}
		}()
	}
	for n := range total {
		jobs <- job{n: n, at: start.Add(time.Duration(float64(n) / rate * float64(time.Second))), p: randomPoint(rng)}
	}
	close(jobs)

	// Count offers over the measured window, with the process's CPU and allocations.
	time.Sleep(time.Until(measureFrom))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	offers0, cpu0, mallocs0, pg0, w0, wr0 := ls.rec.offers.Load(), cputime.Process(), ms.Mallocs, postgresCPU(), ls.writer(), processWritten()
	claimed0, err := ls.claimed(t.Context())
	if err != nil {
		t.Fatalf("count completed jobs: %v", err)
	}
	time.Sleep(time.Until(measureTo))
	runtime.ReadMemStats(&ms)
	offers1, cpu1, mallocs1, pg1, w1, wr1 := ls.rec.offers.Load(), cputime.Process(), ms.Mallocs, postgresCPU(), ls.writer(), processWritten()
	claimed1, err := ls.claimed(t.Context())
	if err != nil {
		t.Fatalf("count completed jobs: %v", err)
	}
	n := offers1 - offers0
	res.offersPerSec = float64(n) / window.Seconds()
	res.claimsPerSec = float64(claimed1-claimed0) / window.Seconds()
	if n > 0 {
		res.cpuPerOffer = ((cpu1 - cpu0) / time.Duration(n)).Round(time.Microsecond)
		res.allocsPer = float64(mallocs1-mallocs0) / float64(n)
		res.pgPerOffer = ((pg1 - pg0) / time.Duration(n)).Round(time.Microsecond)
		res.writerPerOffer = ((w1.Held - w0.Held) / time.Duration(n)).Round(time.Microsecond)
		res.writerCPUPerOffer = ((w1.CPU - w0.CPU) / time.Duration(n)).Round(time.Microsecond)
		res.writerTxPer = float64(w1.Transactions-w0.Transactions) / float64(n)
		res.writerFnPer = float64(w1.Functions-w0.Functions) / float64(n)
		res.writtenPerOffer = float64(wr1-wr0) / float64(n)
	}
	if !latency {
		// Saturated: the backlog is not waited for; stop creating at once.
		wg.Wait()
		mu.Lock()
		res.created, res.createLagP99 = len(windowID), pct(lags, 99)
		res.createP50, res.createP99 = pct(creates, 50), pct(creates, 99)
		mu.Unlock()
		if res.size, err = ls.size(t.Context()); err != nil {
			t.Fatalf("measure the database: %v", err)
		}
		if path := os.Getenv("LASTMILE_DISPATCH_LOAD_KEEP"); path != "" {
			if err := ls.keep(t.Context(), path); err != nil {
				t.Fatalf("keep the database: %v", err)
			}
		}
		return res
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	res.created, res.createLagP99 = len(windowID), pct(lags, 99)
	res.createP50, res.createP99 = pct(creates, 50), pct(creates, 99)
	deadline := time.Now().Add(drainWait)
	for {
		ls.rec.mu.Lock()
		missing := 0
		for _, id := range windowID {
			tt := ls.rec.tasks[id]
			if tt.committed.IsZero() || tt.received.IsZero() {
				missing++
			}
		}
		ls.rec.mu.Unlock()
		if missing == 0 || time.Now().After(deadline) {
			res.unoffered = missing
			if missing > 0 {
				ls.describeMissing(t, windowID)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ls.rec.mu.Lock()
	defer ls.rec.mu.Unlock()
	for _, id := range windowID {
		tt := ls.rec.tasks[id]
		if !tt.committed.IsZero() {
			res.committed = append(res.committed, max(tt.committed.Sub(tt.created), 0))
		}
		if !tt.received.IsZero() {
			res.received = append(res.received, max(tt.received.Sub(tt.created), 0))
		}
	}
	res.stages = ls.rec.stageBreakdown(windowID)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, id := range windowID {
		ds, err := ls.store.Decisions(ctx, id, dispatch.MaxDecisions)
		if err != nil {
			t.Fatalf("decisions of task %s: %v", id, err)
		}
		if len(ds) > 0 {
			res.decide = append(res.decide, ds[len(ds)-1].Elapsed)
		}
	}
	return res
}

// postgresCPU returns the CPU time (user + system) used so far by the processes named "postgres" that
// this user may read in /proc (0 elsewhere): the database server when it runs on this machine. Backends
// live as long as their pooled connections, which outlast a measured window. Other clients of the same
// server count too.
func postgresCPU() time.Duration {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15): split after the closing parenthesis of comm.
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || s[open+1:end] != "postgres" {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(fields[11], 10, 64)
		k, _ := strconv.ParseInt(fields[12], 10, 64)
		ticks += u + k
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ is 100 on Linux
}
