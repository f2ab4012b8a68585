package cli

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"time"

	"google.golang.org/grpc"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/gateway"
	"lastmile/internal/identity"
	identitygrpc "lastmile/internal/identity/grpcapi"
	identitypg "lastmile/internal/identity/postgres"
	identitysqlite "lastmile/internal/identity/sqlite"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/grpcerr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
	"lastmile/internal/platform/auth/jwt"
	"lastmile/internal/platform/auth/password"
	"lastmile/internal/platform/grpcserver"
)

// Token claims shared by the issuer (identity) and every verifier.
const (
	tokenIssuer   = "lastmile-identity"
	tokenAudience = "lastmile"
)

// identityConfig is the identity service's configuration.
type identityConfig struct {
	KeyRotation time.Duration
	AdminEmail  string

	LoginWindow          time.Duration
	LoginFailures        int
	LoginClientFailures  int
	LoginAccountSlowdown int
	SignUpLimit          int
	SignUpWindow         time.Duration
	// SignUpHashSlots is how many of the password hasher's slots (one per CPU) sign-ups and password
	// changes may hold at once; the others stay free for logins.
	SignUpHashSlots int
}

// identityModule declares the identity service. UserService needs the database for every call, so its
// health follows it; AuthService publishes the signing keys from the key manager's cache (GetJwks, and
// the gateway's /.well-known/jwks.json) and fails its database calls (login, refresh) one by one during an
// outage, so it stays in its clients' balancers.
func identityModule() *module {
	var cfg identityConfig
	return &module{
		name: "identity",
		services: []grpcService{
			{name: identityv1.UserService_ServiceDesc.ServiceName, rest: gateway.Routes(identityv1.RegisterUserServiceHandlerClient, identityv1.NewUserServiceClient), needsStore: true},
			{name: identityv1.AuthService_ServiceDesc.ServiceName, rest: gateway.Routes(identityv1.RegisterAuthServiceHandlerClient, identityv1.NewAuthServiceClient)},
		},
		policy:  identitygrpc.Policy,
		streams: identityStreams,
		store:   &storeDecl{SQLite: identitysqlite.Migrations(), Postgres: identitypg.Migrations(), EventLog: true},
		flags: func(fs *flagSet) {
			fs.DurationVar(&cfg.KeyRotation, "key-rotation", 24*time.Hour, "rotate the token signing key this often (0: only by hand); old keys stay published until their tokens expire")
			fs.StringVar(&cfg.AdminEmail, "admin-email", identity.DefaultAdminEmail, "email of the admin account created on first start (its password: LASTMILE_ADMIN_PASSWORD, else generated and printed once)")
			fs.DurationVar(&cfg.LoginWindow, "login-window", identity.DefaultLoginWindow, "period over which failed logins are counted")
			fs.IntVar(&cfg.LoginFailures, "login-failures", identity.DefaultLoginFailures, "failed logins one client may make on one account per --login-window before it is refused (other clients are not)")
			fs.IntVar(&cfg.LoginClientFailures, "login-client-failures", identity.DefaultLoginClientFailures, "failed logins one client may make across accounts per --login-window")
			fs.IntVar(&cfg.LoginAccountSlowdown, "login-account-slowdown", identity.DefaultLoginAccountSlowdown, "failed logins on one account from all clients per --login-window after which further failures are answered after a 1s delay (never refused)")
			fs.IntVar(&cfg.SignUpLimit, "signup-limit", identity.DefaultSignUpLimit, "anonymous sign-ups one client may make per --signup-window, whatever the answer (a taken email counts too)")
			fs.DurationVar(&cfg.SignUpWindow, "signup-window", identity.DefaultSignUpWindow, "period of --signup-limit")
			fs.IntVar(&cfg.SignUpHashSlots, "signup-hash-slots", max(1, runtime.NumCPU()/2), "password hashing slots (one per CPU) that sign-ups and password changes may hold at once; the rest stay free for logins")
		},
		validate: func() error {
			for name, d := range map[string]time.Duration{"login-window": cfg.LoginWindow, "signup-window": cfg.SignUpWindow} {
				if err := positiveDuration(name, d); err != nil {
					return err
				}
			}
			for name, n := range map[string]int{
				"login-failures": cfg.LoginFailures, "login-client-failures": cfg.LoginClientFailures,
				"login-account-slowdown": cfg.LoginAccountSlowdown, "signup-limit": cfg.SignUpLimit,
			} {
				if n <= 0 {
					return usageError{fmt.Errorf("--%s must be positive, got %d", name, n)}
				}
			}
			if n := cfg.SignUpHashSlots; n < 1 || n > runtime.NumCPU() {
				return usageError{fmt.Errorf("--signup-hash-slots must be 1..%d (the CPUs), got %d", runtime.NumCPU(), n)}
			}
			if cfg.KeyRotation < 0 {
				return usageError{errors.New("--key-rotation must not be negative")}
			}
			return nil
		},
		start: func(ctx context.Context, p *process, srv *grpcserver.Server) error {
			return startIdentity(ctx, p, srv, cfg)
		},
	}
}

// identityStreams bounds the identity service's streams. UserActivity is a dashboard's live feed: a few
// per user (browser tabs), 64 of all kept for admins (activityStaffReserve) and half of the rest for
// callers' first stream, a client that half-closed it and hears nothing for a minute is ended, since
// it can no longer change what it follows, and so is one that stops reading for as long as a dispatch
// watch may (defaultWatchSendTimeout). StreamUsers and BulkCreateUsers are admin exports and imports
// that hold a database cursor or the password hasher: two at a time per admin, and an import that stops
// sending items for a minute is ended. WatchSubjects is one stream per replica of a service that checks
// tokens without hosting identity (courier, route): services are callers by name, so the cap per caller
// is the replicas one service may run.
var identityStreams = map[string]grpcserver.StreamLimit{
	identityv1.AuthService_WatchSubjects_FullMethodName: {PerCaller: 64, Total: 256},
	identityv1.UserService_UserActivity_FullMethodName: {PerCaller: 4, Total: 1024, HalfClosedIdle: time.Minute,
		StaffReserve: activityStaffReserve, FirstReserve: (1024 - activityStaffReserve) / 2, Staff: activityStaff,
		SendTimeout: defaultWatchSendTimeout},
	identityv1.UserService_StreamUsers_FullMethodName:     {PerCaller: 2, Total: 16},
	identityv1.UserService_BulkCreateUsers_FullMethodName: {PerCaller: 2, Total: 16, Idle: time.Minute},
}

// activityStaffReserve is the UserActivity slots only admins (who may watch anyone: the users
// dashboard) and services may take, so that customers and couriers following themselves from many
// accounts cannot fill the method and shut the dashboard out.
const activityStaffReserve = 64

// activityStaff reports whether p may take UserActivity's slots kept for staff.
func activityStaff(p auth.Principal) bool {
	return p.Kind == auth.Service || p.HasRole(auth.RoleAdmin)
}

// startIdentity opens the identity store and keys, registers the service, publishes the keys to this
// process's token verifier and bootstraps the first admin.
func startIdentity(ctx context.Context, p *process, srv *grpcserver.Server, cfg identityConfig) error {
	h, err := p.openStore(ctx, srv, "identity")
	if err != nil {
		return err
	}
	var store identity.Store
	if h.SQL != nil {
		store = identitysqlite.New(h.SQL)
	} else {
		pg := identitypg.New(h.Pool)
		// Cleanups run in reverse: the store lets go of its connections before the pool closes.
		p.cleanups = append(p.cleanups, func() { _ = pg.Close() })
		store = pg
	}
	keys := identity.NewKeyManager(store, identity.KeyOptions{
		AccessTokenTTL:   p.cfg.AccessTokenTTL,
		RotationInterval: cfg.KeyRotation,
		Logger:           p.logger,
	})
	p.runners = append(p.runners, keys.Run)
	// The token verifier of this process, built before the server, reads the keys from here.
	p.localKeys = keys

	hasher, err := password.New(password.Config{HashSlots: cfg.SignUpHashSlots})
	if err != nil {
		return fmt.Errorf("password hasher: %w", err)
	}
	issuer, err := jwt.NewIssuer(jwt.IssuerConfig{
		Issuer: tokenIssuer, Audience: tokenAudience, TTL: p.cfg.AccessTokenTTL, Keys: keys,
	})
	if err != nil {
		return fmt.Errorf("token issuer: %w", err)
	}
	// The activity feed: the store appends to identity's event log, every replica tails it.
	feed, err := p.eventLog("identity", h)
	if err != nil {
		return err
	}
	svc := identity.NewService(store, hasher, issuer, identity.Options{
		ClientKey:            grpcauth.ClientKey,
		LoginWindow:          cfg.LoginWindow,
		LoginFailures:        cfg.LoginFailures,
		LoginClientFailures:  cfg.LoginClientFailures,
		LoginAccountSlowdown: cfg.LoginAccountSlowdown,
		SignUpLimit:          cfg.SignUpLimit,
		SignUpWindow:         cfg.SignUpWindow,
		Subjects:             p.identitySubjects(),
		Feed:                 feed,
		Logger:               p.logger,
	})
	p.identitySvc = svc // the subject cache's loader
	identitygrpc.Register(srv, svc, keys)

	// Runners stop just before the gRPC server's graceful stop, which ends the UserActivity streams so that
	// they do not hold it up, and not before: the gateway may still be finishing requests.
	p.runners = append(p.runners, svc.Run)
	// Expired refresh tokens are deleted hourly: every login and rotation stores one.
	p.runners = append(p.runners, svc.RunPurge)

	created, generated, err := svc.EnsureAdmin(ctx, cfg.AdminEmail, p.env.Getenv("LASTMILE_ADMIN_PASSWORD"))
	if ae := (*apperr.Error)(nil); errors.As(err, &ae) && (ae.Code == apperr.Invalid || ae.Code == apperr.Conflict) {
		// The operator's settings were refused: say which, and why, once.
		return fmt.Errorf("the first admin account (--admin-email %q, LASTMILE_ADMIN_PASSWORD): %s", cmp.Or(cfg.AdminEmail, identity.DefaultAdminEmail), ae.Message)
	}
	if err != nil {
		return err // "bootstrap admin: …"
	}
	if created {
		email := cfg.AdminEmail
		if email == "" {
			email = identity.DefaultAdminEmail
		}
		p.logger.Info("created the first admin account", "email", email)
		if generated != "" {
			// Printed once, to the terminal, never to the log: it is the only copy.
			fmt.Fprintf(p.env.Stdout, "\n  lastmile created the first admin account\n    email:    %s\n    password: %s\n"+
				"  It is shown only this once. Set LASTMILE_ADMIN_EMAIL and LASTMILE_ADMIN_PASSWORD to choose them.\n\n", email, generated)
		}
	}
	p.logger.Info("identity service registered")
	return nil
}

// tokenVerifier builds the access-token verifier of this process. Keys come straight from the key manager
// when identity runs here (startIdentity sets p.localKeys before the server serves; the cache fetches
// lazily, at the first token), else from identity's GetJwks over gRPC. Without either, bearer tokens are
// refused.
func (p *process) tokenVerifier() (auth.TokenVerifier, error) {
	if !p.hostsGRPC() {
		return nil, nil // a gateway-only process forwards tokens and verifies none
	}
	var fetch jwt.FetcherFunc
	var conn *grpc.ClientConn
	if !p.cfg.Targets["identity"] {
		var err error
		if conn, err = p.dialService(identityv1.AuthService_ServiceDesc.ServiceName, p.clientIdentity()); err != nil {
			return nil, err
		}
	}
	switch {
	case p.cfg.Targets["identity"]:
		fetch = func(ctx context.Context) ([]jwt.PublicKey, error) {
			if p.localKeys == nil {
				return nil, apperr.Errorf(apperr.Unavailable, "identity keys not loaded yet")
			}
			keys, err := p.localKeys.PublicKeys(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]jwt.PublicKey, 0, len(keys))
			for _, k := range keys {
				out = append(out, jwt.PublicKey{KID: k.KID, Key: ed25519.PublicKey(k.PublicKey)})
			}
			return out, nil
		}
	case conn != nil:
		p.identityConn = conn // the subject cache reads and watches users' standing over it too
		client := identityv1.NewAuthServiceClient(conn)
		fetch = func(ctx context.Context) ([]jwt.PublicKey, error) {
			set, err := client.GetJwks(ctx, &identityv1.GetJwksRequest{})
			if err != nil {
				return nil, grpcerr.FromStatus("identity", err)
			}
			return publicKeys(set), nil
		}
	default:
		p.logger.Warn("no identity service here and no --identity-addr: bearer tokens will be refused")
		return nil, nil
	}
	cache, err := jwt.NewKeyCache(fetch, jwt.KeyCacheConfig{Logger: p.logger})
	if err != nil {
		return nil, err
	}
	return jwt.NewVerifier(jwt.VerifierConfig{Issuer: tokenIssuer, Audience: tokenAudience, Keys: cache, MaxLifetime: p.cfg.AccessTokenTTL})
}

// publicKeys extracts the Ed25519 keys of a JWKS, skipping any other kind of key.
func publicKeys(set *identityv1.JsonWebKeySet) []jwt.PublicKey {
	var out []jwt.PublicKey
	for _, k := range set.GetKeys() {
		if k.GetKty() != "OKP" || k.GetCrv() != "Ed25519" {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(k.GetX())
		if err != nil || len(x) != ed25519.PublicKeySize {
			continue
		}
		out = append(out, jwt.PublicKey{KID: k.GetKid(), Key: ed25519.PublicKey(x)})
	}
	return out
}

// subjectCache returns the cache of users' standing (suspended, deleted, roles, revoked tokens) that this
// process's authenticator checks every call against, and that ends a user's streams when their token is
// revoked. When identity runs here, the identity service reads it from its store and keeps it current, on
// every replica, from its event log. Else it reads a missing state from identity over the token
// verifier's connection (AuthService.GetSubject), and a runner keeps it current from identity's stream
// of changes (AuthService.WatchSubjects). Nil when identity is neither here nor configured: every bearer
// token is refused then.
func (p *process) subjectCache() *auth.Subjects {
	if !p.cfg.Targets["identity"] {
		if p.identityConn == nil {
			return nil
		}
		client := identityv1.NewAuthServiceClient(p.identityConn)
		p.subjects = remoteSubjects(client)
		w := &subjectWatch{client: client, subjects: p.subjects, logger: p.logger}
		p.runners = append(p.runners, w.run)
		return p.subjects
	}
	p.subjects = auth.NewSubjects(func(ctx context.Context, id string) (auth.SubjectState, error) {
		if p.identitySvc == nil {
			return auth.SubjectState{}, apperr.Errorf(apperr.Unavailable, "the identity service is not started yet")
		}
		return p.identitySvc.SubjectState(ctx, id)
	}, auth.SubjectsOptions{})
	return p.subjects
}

// identitySubjects returns the subject cache for identity.Options.Subjects: nil (an interface holding
// nothing) when this process has none.
func (p *process) identitySubjects() identity.SubjectCache {
	if p.subjects == nil {
		return nil
	}
	return p.subjects
}
