package identity

import (
	"context"
	"log/slog"
	"time"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// PasswordHasher hashes and checks passwords. The platform's Argon2id hasher implements it.
type PasswordHasher interface {
	// Hash returns the encoded hash of password (a PHC string).
	Hash(ctx context.Context, password string) (string, error)
	// Verify reports whether password matches encoded, in constant time, and whether encoded uses outdated
	// parameters and should be replaced by a fresh Hash. A mismatch is ok == false with a nil error; err
	// is for malformed hashes and cancelled contexts.
	Verify(ctx context.Context, password, encoded string) (ok, needsRehash bool, err error)
	// DummyVerify costs as much as a Verify that fails, and fails as Verify would (an overloaded hasher,
	// say). Login calls it for unknown users, so that neither the response time nor the error tells
	// whether an account exists.
	DummyVerify(ctx context.Context, password string) error
}

// TokenIssuer issues access tokens. The platform's JWT issuer implements it.
type TokenIssuer interface {
	// Issue returns a signed access token for userID holding roles, and when it expires.
	Issue(ctx context.Context, userID string, roles []string) (token string, expiresAt time.Time, err error)
}

// Defaults applied by NewService to zero Options fields.
const (
	DefaultRefreshTokenTTL      = 30 * 24 * time.Hour
	DefaultLoginWindow          = 15 * time.Minute
	DefaultLoginFailures        = 5
	DefaultLoginClientFailures  = 50
	DefaultLoginAccountSlowdown = 20
	DefaultLoginBackoff         = time.Second
	DefaultLoginLimiterKeys     = 10_000
	DefaultSignUpLimit          = 10
	DefaultSignUpWindow         = time.Hour
	DefaultActivityBuffer       = 256
)

// Limits of the contract.
const (
	// DefaultPageSize is the ListUsers page size when none is asked for.
	DefaultPageSize = 50
	// MaxPageSize bounds the ListUsers page size.
	MaxPageSize = 1000
	// MaxBulkItems bounds the items of one BulkCreateUsers call.
	MaxBulkItems = 1000
	// MaxWatchedUsers bounds the subscription set of one activity watch.
	MaxWatchedUsers = 1000
	// MaxWatchChange bounds the ids of one subscribe or unsubscribe list.
	MaxWatchChange = 100
)

// Options configures a Service. The zero value is usable: the defaults above, the wall clock, no
// client addresses (every caller is one client) and no logging.
type Options struct {
	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
	// RefreshTokenTTL bounds a session (a refresh-token family) from its login: rotation never extends it.
	// Default 30 days.
	RefreshTokenTTL time.Duration

	// ClientKey names the client of a call for the per-client limits, typically its network address
	// (grpcauth.ClientKey). Nil, or an empty key, makes every such caller one client "": then one
	// client's failures lock an account for everyone, as no client can be told from another.
	ClientKey func(ctx context.Context) string
	// LoginWindow is the period over which failed logins are counted. Default 15 minutes.
	LoginWindow time.Duration
	// LoginFailures is how many failed logins one client may collect on one account (email or username)
	// per LoginWindow before its further attempts on it are refused. It is per client so that nobody can
	// lock anyone else out of an account. Default 5.
	LoginFailures int
	// LoginClientFailures is how many failed logins one client may collect across accounts per
	// LoginWindow, against credential stuffing. Default 50.
	LoginClientFailures int
	// LoginAccountSlowdown is how many failed logins one account may collect from all clients per
	// LoginWindow before every further failure on it is answered only after LoginBackoff. Attempts are
	// never refused for it and a right password is never delayed: it slows guessing spread over many
	// clients without locking the owner out. Default 20.
	LoginAccountSlowdown int
	// LoginBackoff is how long a failed login on an account past LoginAccountSlowdown waits before its
	// answer. Default 1s.
	LoginBackoff time.Duration
	// LoginLimiterKeys bounds the keys tracked by each login and sign-up limit; the least recently seen
	// are forgotten first. Default 10,000.
	LoginLimiterKeys int
	// SignUpLimit is how many sign-ups (CreateUser by anonymous callers, whatever the answer: a taken
	// email costs as much as a new account) one client may make per SignUpWindow. Default 10.
	SignUpLimit int
	// SignUpWindow is the period of SignUpLimit. Default 1 hour.
	SignUpWindow time.Duration
	// Sleep waits d or until ctx ends, for LoginBackoff; nil means a timer. Tests inject one.
	Sleep func(ctx context.Context, d time.Duration)

	// Subjects, when set, is the process's cache of users' standing that the authenticator checks every
	// call against (normally the *auth.Subjects given to grpcauth.ServiceAuthenticator): the Service
	// updates it after each change of a user's standing and, while Run runs, for each such change read
	// from the event log, whichever replica made it.
	Subjects SubjectCache

	// Feed is identity's event log (an *eventlog.Log over the store's database), which the store appends
	// activity to. The activity feed (WatchActivity, Run) needs it; without it WatchActivity answers
	// Unavailable and Run fails.
	Feed ActivityFeed
	// ActivityBuffer is how many events may wait for one slow watcher before it is disconnected with
	// ResourceExhausted. Default 256.
	ActivityBuffer int
	// SubjectWatchBuffer is how many changes of users' standing may wait for one slow WatchSubjects
	// call before it ends with ResourceExhausted. Default DefaultSubjectWatchBuffer.
	SubjectWatchBuffer int

	// Logger receives failures that are not returned to a caller (a bulk item that could not be stored,
	// the activity feed's read errors, once per outage). Nil discards them.
	Logger *slog.Logger
}

// Service implements the identity use cases: users, sessions and the activity feed. Every method that
// acts for a caller reads the caller from the context (auth.FromContext) and enforces the object-level
// rules itself; the transport's method-level policy is only the first gate. It is safe for concurrent use.
//
// The activity feed, and learning of other replicas' changes to users' standing (Options.Subjects),
// need Run to be running.
type Service struct {
	store  Store
	hasher PasswordHasher
	issuer TokenIssuer
	opts   Options
	now    func() time.Time
	logger *slog.Logger

	// pairLimit counts failed logins per account and client, clientLimit per client, accountSlowdown per
	// account; signUpLimit counts anonymous sign-ups per client.
	pairLimit       *limiter
	clientLimit     *limiter
	accountSlowdown *limiter
	signUpLimit     *limiter
	hub             *hub
	// watchers are the WatchSubjects calls.
	watchers subjectWatchers
}

// NewService returns a Service over store that hashes passwords with hasher and issues access tokens with
// issuer. Zero fields of opts take the defaults above.
func NewService(store Store, hasher PasswordHasher, issuer TokenIssuer, opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&opts.RefreshTokenTTL, DefaultRefreshTokenTTL)
	setDefault(&opts.SubjectWatchBuffer, DefaultSubjectWatchBuffer)
	setDefault(&opts.LoginWindow, DefaultLoginWindow)
	setDefault(&opts.LoginFailures, DefaultLoginFailures)
	setDefault(&opts.LoginClientFailures, DefaultLoginClientFailures)
	setDefault(&opts.LoginAccountSlowdown, DefaultLoginAccountSlowdown)
	setDefault(&opts.LoginBackoff, DefaultLoginBackoff)
	setDefault(&opts.LoginLimiterKeys, DefaultLoginLimiterKeys)
	setDefault(&opts.SignUpLimit, DefaultSignUpLimit)
	setDefault(&opts.SignUpWindow, DefaultSignUpWindow)
	if opts.ClientKey == nil {
		opts.ClientKey = func(context.Context) string { return "" }
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	setDefault(&opts.ActivityBuffer, DefaultActivityBuffer)
	s := &Service{
		store:  store,
		hasher: hasher,
		issuer: issuer,
		opts:   opts,
		now:    opts.Now,
		logger: opts.Logger,
		pairLimit: newLimiter(opts.LoginFailures, opts.LoginWindow, opts.LoginLimiterKeys,
			"too many failed attempts; try again later"),
		clientLimit: newLimiter(opts.LoginClientFailures, opts.LoginWindow, opts.LoginLimiterKeys,
			"too many failed attempts; try again later"),
		accountSlowdown: newLimiter(opts.LoginAccountSlowdown, opts.LoginWindow, opts.LoginLimiterKeys,
			"too many failed attempts; try again later"),
		signUpLimit: newLimiter(opts.SignUpLimit, opts.SignUpWindow, opts.LoginLimiterKeys,
			"too many sign-ups from your network; try again later"),
	}
	s.watchers.buffer = opts.SubjectWatchBuffer
	s.hub = newHub(store, opts)
	s.hub.revoked = s.refreshSubject
	s.hub.lost = s.forgetSubjects
	return s
}

// Run feeds the activity watchers from the event log (Options.Feed), and updates Options.Subjects for
// every change of a user's standing it reads there, until ctx is done; then it disconnects every watcher
// and every WatchSubjects call with Unavailable (so that clients reconnect, to another replica during a
// shutdown, and do not hold up the gRPC server's graceful stop) and returns nil. Run it once, for the life
// of the service; the gRPC server's OnShutdown hook is a good place to end it. It returns an error when
// Options.Feed is nil or when called twice at once.
func (s *Service) Run(ctx context.Context) error {
	s.watchers.setStopped(false)
	err := s.hub.run(ctx)
	if ctx.Err() != nil {
		s.watchers.setStopped(true)
	}
	return err
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// setDefault sets *v to def when *v is zero or negative.
func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// caller is the principal of a call, with the questions the object-level rules ask of it.
type caller struct{ auth.Principal }

func callerOf(ctx context.Context) caller { return caller{auth.FromContext(ctx)} }

func (c caller) isAdmin() bool      { return c.HasRole(auth.RoleAdmin) }
func (c caller) isDispatcher() bool { return c.HasRole(auth.RoleDispatcher) }
func (c caller) is(userID string) bool {
	return c.Kind == auth.User && c.Subject != "" && c.Subject == userID
}

// actorID is the user id recorded as the actor of an activity: empty for services and the system.
func (c caller) actorID() string {
	if c.Kind == auth.User {
		return c.Subject
	}
	return ""
}

// canSee reports whether the caller may learn that u exists. Users see themselves; dispatchers (who look
// up couriers to register them) and services that the policy admitted see every user; admins also see
// deleted users. Everyone else gets NotFound, exactly as for a user that does not exist.
func (c caller) canSee(u User) bool {
	switch {
	case c.isAdmin():
		return true
	case u.Status == StatusDeleted:
		return false
	case c.is(u.ID), c.isDispatcher(), c.Kind == auth.Service:
		return true
	}
	return false
}

// errUserNotFound is the one answer for users that do not exist and users the caller may not see.
func errUserNotFound() error { return apperr.Errorf(apperr.NotFound, "user not found") }
