package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/blob"
	"lastmile/internal/dispatch/courierclient"
	dispatchgrpc "lastmile/internal/dispatch/grpcapi"
	"lastmile/internal/dispatch/jobargs"
	dispatchpg "lastmile/internal/dispatch/postgres"
	"lastmile/internal/dispatch/routeclient"
	dispatchsqlite "lastmile/internal/dispatch/sqlite"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/gateway"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/jobs"
	"lastmile/internal/platform/telemetry"

	"github.com/prometheus/client_golang/prometheus"
)

// dispatchConfig is the dispatch service's configuration.
type dispatchConfig struct {
	OfferTimeout time.Duration
	MaxWait      time.Duration
	SearchRadius float64
	MaxRadius    float64
	Weights      string
	JobWorkers   int
	SessionRate  float64
	SessionBurst int
	MaxOpenTasks int
	MaxBackoff   time.Duration
	WatchSend    time.Duration
	SessionSend  time.Duration
	UploadIdle   time.Duration

	UploadMaxBytes int64
	ContentTypes   listFlag
	ProofDir       string
}

// dispatchModule declares the dispatch service: its store (with the event log its sessions and watches
// tail, and River's job tables for the durable claims and releases), and the courier and route services
// as peers. Its health follows its database: no call can be answered without it.
func dispatchModule() *module {
	cfg := dispatchConfig{ContentTypes: listFlag(dispatch.DefaultAllowedContentTypes)}
	var weights dispatch.Weights
	streams := maps.Clone(dispatchStreams) // the watches' and sessions' send timeouts and the uploads' idle timeout are flags
	return &module{
		name:     "dispatch",
		services: []grpcService{{name: dispatchv1.DispatchService_ServiceDesc.ServiceName, rest: gateway.Routes(dispatchv1.RegisterDispatchServiceHandlerClient, dispatchv1.NewDispatchServiceClient), needsStore: true}},
		peers:    []string{courierv1.CourierService_ServiceDesc.ServiceName, routev1.RouteService_ServiceDesc.ServiceName},
		policy:   dispatchgrpc.Policy,
		streams:  streams,
		store:    &storeDecl{SQLite: dispatchsqlite.Migrations(), Postgres: dispatchpg.Migrations(), EventLog: true, Jobs: true},
		flags: func(fs *flagSet) {
			fs.DurationVar(&cfg.OfferTimeout, "offer-timeout", dispatch.DefaultOfferTimeout, "how long a courier has to answer an offer before it goes to the next candidate")
			fs.DurationVar(&cfg.MaxWait, "dispatch-max-wait", dispatch.DefaultMaxWait, "how long the engine looks for a courier for a task without a pickup window before it makes the task UNASSIGNABLE")
			fs.Float64Var(&cfg.SearchRadius, "dispatch-search-radius", dispatch.DefaultSearchRadius, "first radius searched around a pickup, in meters; the engine doubles it up to --dispatch-max-radius")
			fs.Float64Var(&cfg.MaxRadius, "dispatch-max-radius", dispatch.DefaultMaxRadius, "largest radius searched around a pickup, in meters (at most 50000)")
			fs.IntVar(&cfg.JobWorkers, "dispatch-job-workers", jobargs.DefaultWorkers, "dispatch jobs (courier claims and releases, a call to courier each) one replica runs at once")
			fs.Float64Var(&cfg.SessionRate, "dispatch-session-rate", dispatch.DefaultSessionRate, "commands and acks a second one courier's StreamAssignments sessions on this replica may send after --dispatch-session-burst (more ends the stream with RESOURCE_EXHAUSTED)")
			fs.IntVar(&cfg.SessionBurst, "dispatch-session-burst", dispatch.DefaultSessionBurst, "commands and acks one courier's StreamAssignments sessions on this replica may send at once (an app coming back online replays its queue)")
			fs.DurationVar(&cfg.MaxBackoff, "dispatch-max-retry-backoff", dispatch.DefaultMaxRetryBackoff, "longest wait between two searches for a task no courier could take (the wait doubles from 5s per search; a courier opening a session, becoming free or available, or moving near the pickup ends it at once)")
			fs.DurationVar(&cfg.WatchSend, "dispatch-watch-send-timeout", defaultWatchSendTimeout, "longest a WatchTask or WatchTasks message may wait to be sent before the stream is ended with DEADLINE_EXCEEDED (a client that stopped reading)")
			fs.DurationVar(&cfg.SessionSend, "dispatch-session-send-timeout", defaultSessionSendTimeout, "longest a StreamAssignments message may wait to be sent before the courier's session is ended with DEADLINE_EXCEEDED (an app that stopped reading; nothing is lost, unacknowledged deliveries are replayed)")
			fs.DurationVar(&cfg.UploadIdle, "dispatch-upload-idle-timeout", defaultUploadIdleTimeout, "longest an UploadProof stream may go without a message from the app before it is ended with DEADLINE_EXCEEDED, freeing its slot and the upload for a new stream that resumes it (each chunk must arrive within it: a slow link sends smaller chunks)")
			fs.IntVar(&cfg.MaxOpenTasks, "dispatch-max-open-tasks", dispatch.DefaultMaxOpenTasks, "open tasks (any state but delivered, cancelled and failed) one customer may have; CreateTask answers RESOURCE_EXHAUSTED beyond")
			fs.StringVar(&cfg.Weights, "dispatch-weights", formatWeights(dispatch.DefaultWeights), "the engine's score weights, name=value for eta, distance, load and fairness (unnamed ones keep their default)")
			fs.Int64Var(&cfg.UploadMaxBytes, "upload-max-bytes", dispatch.DefaultMaxUploadBytes, "largest proof upload (photo, signature) in bytes, at most 10 MiB")
			fs.Var(&cfg.ContentTypes, "upload-content-types", "proof upload content types accepted (comma list of image/jpeg, image/png, image/webp); signatures are image/png, so a list without it refuses them")
			fs.StringVar(&cfg.ProofDir, "proof-dir", "", "directory of proof uploads with SQLite (default <data-dir>/"+blob.DefaultDir+"); with PostgreSQL they are kept in the database, which every replica reads")
		},
		validate: func() error {
			for name, d := range map[string]time.Duration{"offer-timeout": cfg.OfferTimeout, "dispatch-max-wait": cfg.MaxWait, "dispatch-max-retry-backoff": cfg.MaxBackoff, "dispatch-watch-send-timeout": cfg.WatchSend, "dispatch-session-send-timeout": cfg.SessionSend, "dispatch-upload-idle-timeout": cfg.UploadIdle} {
				if err := positiveDuration(name, d); err != nil {
					return err
				}
			}
			if cfg.MaxBackoff > 24*time.Hour {
				return usageError{fmt.Errorf("--dispatch-max-retry-backoff must be at most 24h, got %s", cfg.MaxBackoff)}
			}
			if cfg.SearchRadius <= 0 || cfg.MaxRadius < cfg.SearchRadius || cfg.MaxRadius > 50000 {
				return usageError{fmt.Errorf("--dispatch-search-radius (%g) must be positive and at most --dispatch-max-radius (%g), itself at most 50000", cfg.SearchRadius, cfg.MaxRadius)}
			}
			if cfg.JobWorkers < 1 || cfg.JobWorkers > jobargs.MaxWorkers {
				return usageError{fmt.Errorf("--dispatch-job-workers must be 1..%d, got %d", jobargs.MaxWorkers, cfg.JobWorkers)}
			}
			if !(cfg.SessionRate > 0 && cfg.SessionRate <= maxSessionRate) {
				return usageError{fmt.Errorf("--dispatch-session-rate must be above 0 and at most %d, got %g", maxSessionRate, cfg.SessionRate)}
			}
			if cfg.SessionBurst < 1 || cfg.SessionBurst > maxSessionBurst {
				return usageError{fmt.Errorf("--dispatch-session-burst must be 1..%d, got %d", maxSessionBurst, cfg.SessionBurst)}
			}
			if cfg.MaxOpenTasks < 1 || cfg.MaxOpenTasks > maxOpenTasks {
				return usageError{fmt.Errorf("--dispatch-max-open-tasks must be 1..%d, got %d", maxOpenTasks, cfg.MaxOpenTasks)}
			}
			if cfg.UploadMaxBytes <= 0 || cfg.UploadMaxBytes > dispatch.DefaultMaxUploadBytes {
				return usageError{fmt.Errorf("--upload-max-bytes must be 1..%d, got %d", dispatch.DefaultMaxUploadBytes, cfg.UploadMaxBytes)}
			}
			if len(cfg.ContentTypes) == 0 {
				return usageError{errors.New("--upload-content-types must name at least one type")}
			}
			for _, ct := range cfg.ContentTypes {
				if !slices.Contains(dispatch.DefaultAllowedContentTypes, ct) {
					return usageError{fmt.Errorf("--upload-content-types: %q is not one of %s", ct, strings.Join(dispatch.DefaultAllowedContentTypes, ", "))}
				}
			}
			for _, m := range []string{dispatchv1.DispatchService_WatchTask_FullMethodName, dispatchv1.DispatchService_WatchTasks_FullMethodName} {
				lim := streams[m]
				lim.SendTimeout = cfg.WatchSend
				streams[m] = lim
			}
			sessions := streams[dispatchv1.DispatchService_StreamAssignments_FullMethodName]
			sessions.SendTimeout = cfg.SessionSend
			streams[dispatchv1.DispatchService_StreamAssignments_FullMethodName] = sessions
			upload := streams[dispatchv1.DispatchService_UploadProof_FullMethodName]
			upload.Idle = cfg.UploadIdle
			streams[dispatchv1.DispatchService_UploadProof_FullMethodName] = upload
			w, err := parseWeights(cfg.Weights)
			if err != nil {
				return usageError{fmt.Errorf("--dispatch-weights: %w", err)}
			}
			weights = w
			return nil
		},
		start: func(ctx context.Context, p *process, srv *grpcserver.Server) error {
			return startDispatch(ctx, p, srv, cfg, weights)
		},
	}
}

// dispatchStreams bounds dispatch's streams. A courier holds one StreamAssignments session, with room for
// a reconnect that overlaps the old stream; sessions are not ended for idleness (the app may have nothing
// to say for hours: keepalive finds dead peers), but a session whose app stopped reading (keepalive cannot
// tell: the app's connection still answers pings) is ended after --dispatch-session-send-timeout, so that
// it does not hold one of the courier's two slots, nor outlive its replacement, until the connection is
// recycled. Customers follow a few tasks at once (WatchTask), and
// dashboards a few lists (WatchTasks). A courier uploads a few proofs at once, each on its own stream.
//
// The watches' pools are shared fairly, since anyone may sign up as a customer: 64 slots are kept for
// staff (dashboards), and half of the rest for callers without a watch of that kind yet, so that accounts
// holding many watches each cannot lock everyone else out (filling the pool takes an account per slot of
// that half). A watch whose client stopped reading is ended after --dispatch-watch-send-timeout.
//
// An upload stream from which no message came for --dispatch-upload-idle-timeout is ended, so that an app
// that opened one and went quiet does not keep its slot, and the upload's writer lease, for ever: the
// handler then releases the lease, and the upload waits IN_PROGRESS at its committed offset for a new
// stream to resume it.
//
// A proof download (GetProofContent) whose client stopped reading is ended after
// proofContentSendTimeout, so that callers who may read a proof (its customer, its courier) cannot hold
// the method's slots, each with an open file, until their connections are recycled.
var dispatchStreams = map[string]grpcserver.StreamLimit{
	dispatchv1.DispatchService_StreamAssignments_FullMethodName: {PerCaller: 2, Total: 20000},
	dispatchv1.DispatchService_WatchTask_FullMethodName: {PerCaller: 16, Total: grpcserver.DefaultStreamsTotal,
		StaffReserve: watchStaffReserve, FirstReserve: (grpcserver.DefaultStreamsTotal - watchStaffReserve) / 2, Staff: streamStaff},
	dispatchv1.DispatchService_WatchTasks_FullMethodName: {PerCaller: 4, Total: grpcserver.DefaultStreamsTotal,
		StaffReserve: watchStaffReserve, FirstReserve: (grpcserver.DefaultStreamsTotal - watchStaffReserve) / 2, Staff: streamStaff},
	dispatchv1.DispatchService_UploadProof_FullMethodName:     {PerCaller: 8},
	dispatchv1.DispatchService_GetProofContent_FullMethodName: {SendTimeout: proofContentSendTimeout},
}

// watchStaffReserve is the watch slots kept for staff; defaultWatchSendTimeout the default of
// --dispatch-watch-send-timeout; defaultSessionSendTimeout the default of --dispatch-session-send-timeout,
// longer than the watches' since an app back online on a slow network has its replay to catch up on;
// defaultUploadIdleTimeout the default of --dispatch-upload-idle-timeout: as long as an upload's writer
// lease lasts without a chunk (dispatch.UploadWriterLease), and enough for a chunk of 1 MiB at about
// 140 kbit/s.
//
// proofContentSendTimeout is as long as a session's: a GetProofContent message holds up to 256 KiB, which
// a client reading at about 35 kbit/s still takes within it.
const (
	proofContentSendTimeout   = time.Minute
	watchStaffReserve         = 64
	defaultWatchSendTimeout   = 30 * time.Second
	defaultSessionSendTimeout = time.Minute
	defaultUploadIdleTimeout  = time.Minute
)

// streamStaff reports whether p may take the watch slots kept for staff: dispatchers, administrators and
// services.
func streamStaff(p auth.Principal) bool {
	return p.Kind == auth.Service || p.HasRole(auth.RoleDispatcher) || p.HasRole(auth.RoleAdmin)
}

// maxSessionRate and maxSessionBurst bound --dispatch-session-rate and --dispatch-session-burst: far
// above any app, low enough to still bound what one courier stores.
const (
	maxSessionRate  = 1000
	maxSessionBurst = 100000
)

// maxOpenTasks bounds --dispatch-max-open-tasks: the open tasks of one customer that a WatchTasks
// snapshot or a ListTasks count may have to go through.
const maxOpenTasks = 1000000

var (
	errCourierUnconfigured = apperr.Errorf(apperr.Unavailable, "courier service not configured")
	errRouteUnconfigured   = apperr.Errorf(apperr.Unavailable, "route service not configured")
)

// startDispatch opens the dispatch store, its event log and its job queue, connects to courier and route,
// registers the service and schedules its background work: the service's loop (work queue, sessions,
// watches, purge), the event log's tail and the job workers while serving, and the sessions' drain when
// the gRPC server starts stopping.
func startDispatch(ctx context.Context, p *process, srv *grpcserver.Server, cfg dispatchConfig, weights dispatch.Weights) error {
	h, err := p.openStore(ctx, srv, "dispatch")
	if err != nil {
		return err
	}
	var store *sqlstore.Store
	var blobs dispatch.Blobs
	var jopts jobs.Options
	if h.SQL != nil {
		store = dispatchsqlite.New(h.SQL)
		dir := cfg.ProofDir
		if dir == "" {
			dir = filepath.Join(p.cfg.DataDir, blob.DefaultDir)
		}
		files, err := blob.NewFiles(dir)
		if err != nil {
			return fmt.Errorf("dispatch proof directory: %w", err)
		}
		blobs = files
	} else {
		store = dispatchpg.New(h.Pool)
		// Cleanups run in reverse: the store lets go of its connections before the pool closes.
		p.cleanups = append(p.cleanups, func() { _ = store.Close() })
		// Every replica reads and resumes every upload: the bytes live in the shared database.
		blobs = blob.NewPostgres(store.DB())
		jopts.Listener, jopts.Schema = h.Pool, dispatchpg.Schema
	}
	feed, err := p.eventLog("dispatch", h)
	if err != nil {
		return err
	}
	store.SetNudge(feed.Nudge)

	var svc *dispatch.Service
	jopts.Logger = p.logger.With("module", "dispatch", "component", "jobs")
	// River logs an ERROR line per failed attempt of each of its loops; the job queue logs each kind
	// once per outage and counts them all here.
	jopts.Errors, err = telemetry.Register(p.registry, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lastmile_dispatch_job_queue_errors_total",
		Help: "Errors of dispatch's job queue (River): failed attempts of its loops to fetch, complete or rescue jobs, elect a leader or listen, logged once per kind and outage.",
	}))
	if err != nil {
		return fmt.Errorf("register dispatch job queue errors: %w", err)
	}
	// Failed claims and releases are snoozed, retried within a minute however long courier was down.
	jopts.RetryPolicy = jobargs.RetryPolicy{}
	jopts.Workers = jobargs.Workers(func(ctx context.Context, j dispatch.Job) error { return svc.RunJob(ctx, j) }, jobargs.RetryPolicy{}, jopts.Logger)
	jopts.Queues = jobargs.Queues(cfg.JobWorkers)
	queue, err := jobs.New(store.DB(), store.Dialect(), jopts)
	if err != nil {
		return fmt.Errorf("dispatch jobs: %w", err)
	}
	store.SetJobs(sqlstore.RiverJobs(queue))

	var couriers dispatch.Couriers = unreachableCouriers{}
	if conn := p.peer(courierv1.CourierService_ServiceDesc.ServiceName); conn != nil {
		couriers = courierclient.New(courierv1.NewCourierServiceClient(conn))
	}
	metrics, err := dispatchgrpc.NewMetrics(p.registry)
	if err != nil {
		return err
	}
	var routes dispatch.Routes = unreachableRoutes{}
	if conn := p.peer(routev1.RouteService_ServiceDesc.ServiceName); conn != nil {
		routes = routeclient.New(routev1.NewRouteServiceClient(conn), routeclient.Options{Logger: p.logger, Observer: metrics})
	}
	if _, err := telemetry.Register(p.registry, dispatchgrpc.NewTaskStates(store, 2*time.Second, p.logger)); err != nil {
		return fmt.Errorf("register dispatch task gauge: %w", err)
	}
	// AssignTask checks the standing of the courier's user in the same cache the authenticator checks
	// every call against. Without one no user can call at all, so there is nothing to check.
	// It also tells dispatch of every change of a user's standing, so that a courier who may no longer
	// work loses their open offers at once, session or not.
	var accounts dispatch.Accounts
	if p.subjects != nil {
		accounts = p.subjects
	}
	svc = dispatch.NewService(dispatch.Deps{
		Store: store, Uploads: store.Uploads(), ShareKeys: store.ShareKeys(), Blobs: blobs, Couriers: couriers, Accounts: accounts,
		Routes: routes, Events: feed, Metrics: metrics,
	}, dispatch.Options{
		Now: p.env.Now, Logger: p.logger,
		OfferTimeout: cfg.OfferTimeout, MaxWait: cfg.MaxWait, SearchRadius: cfg.SearchRadius, MaxRadius: cfg.MaxRadius,
		Weights: weights, MaxUploadBytes: cfg.UploadMaxBytes, AllowedContentTypes: cfg.ContentTypes,
		SessionRate: cfg.SessionRate, SessionBurst: cfg.SessionBurst, MaxOpenTasks: cfg.MaxOpenTasks,
		MaxRetryBackoff: cfg.MaxBackoff,
	})
	api := dispatchgrpc.NewServer(svc)
	dispatchgrpc.Register(srv, api)
	// As the gRPC server starts stopping, courier sessions are told to go (a drain, SERVER_SHUTDOWN) and
	// get half the shutdown timeout to reconnect elsewhere before their streams end with Unavailable; open
	// watches end at once with Unavailable. Neither holds the graceful stop up to its deadline.
	srv.OnShutdown(func() { svc.Drain(p.cfg.ShutdownTimeout / 2) })
	srv.OnShutdown(api.Shutdown)
	p.runners = append(p.runners, svc.Run, queue.Run)
	p.logger.Info("dispatch service registered", "offer_timeout", cfg.OfferTimeout, "weights", formatWeights(weights))
	return nil
}

var _ dispatch.AccountWatcher = (*auth.Subjects)(nil)

// unreachableCouriers is the Couriers of a dispatch service that has no courier service to ask.
type unreachableCouriers struct{}

func (unreachableCouriers) FindNearby(context.Context, dispatch.NearbyQuery) ([]dispatch.CourierInfo, error) {
	return nil, errCourierUnconfigured
}
func (unreachableCouriers) Status(context.Context, string) (dispatch.CourierInfo, error) {
	return dispatch.CourierInfo{}, errCourierUnconfigured
}
func (unreachableCouriers) CourierOfUser(context.Context, string) (string, error) {
	return "", errCourierUnconfigured
}
func (unreachableCouriers) UserOfCourier(context.Context, string) (string, error) {
	return "", errCourierUnconfigured
}
func (unreachableCouriers) Claim(context.Context, string, string, time.Time, int64) (bool, error) {
	return false, errCourierUnconfigured
}
func (unreachableCouriers) Release(context.Context, string, string, int64) error {
	return errCourierUnconfigured
}

// unreachableRoutes is the Routes of a dispatch service that has no route service to ask: the engine
// uses its local estimate.
type unreachableRoutes struct{}

func (unreachableRoutes) Matrix(context.Context, []geo.LatLng, geo.LatLng, geo.TransportMode, time.Time) ([]dispatch.Leg, string, error) {
	return nil, "", errRouteUnconfigured
}
