package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/identity"
	identitygrpc "lastmile/internal/identity/grpcapi"
	identitypg "lastmile/internal/identity/postgres"
	identitysqlite "lastmile/internal/identity/sqlite"
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

// identityParts is the identity service before its gRPC server exists: the store and the signing keys,
// which the token verifier of this same process reads directly.
type identityParts struct {
	store identity.Store
	keys  *identity.KeyManager
}

func (p *process) openIdentity(ctx context.Context) (*identityParts, error) {
	h, err := p.openStore(ctx, "identity")
	if err != nil {
		return nil, err
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
		RotationInterval: p.cfg.KeyRotation,
		Logger:           p.logger,
	})
	p.runners = append(p.runners, keys.Run)
	return &identityParts{store: store, keys: keys}, nil
}

// openStore opens (and, unless --auto-migrate=false, migrates) a service's database and registers its
// readiness check and cleanup.
func (p *process) openStore(ctx context.Context, service string) (dbHandle, error) {
	h, err := openDB(ctx, p.cfg.Dialect, p.cfg.DataDir, p.cfg.DatabaseURL, storeFor(service), p.cfg.AutoMigrate)
	if err != nil {
		return dbHandle{}, err
	}
	p.cleanups = append(p.cleanups, h.Close)
	p.readies = append(p.readies, func(ctx context.Context) error {
		var err error
		if h.SQL != nil {
			err = h.SQL.PingContext(ctx)
		} else {
			err = h.Pool.Ping(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s database unreachable", service)
		}
		return nil
	})
	return h, nil
}

func (p *process) startIdentity(ctx context.Context, srv *grpcserver.Server, parts *identityParts) error {
	hasher, err := password.New(password.Config{})
	if err != nil {
		return err
	}
	issuer, err := jwt.NewIssuer(jwt.IssuerConfig{
		Issuer: tokenIssuer, Audience: tokenAudience, TTL: p.cfg.AccessTokenTTL, Keys: parts.keys,
	})
	if err != nil {
		return err
	}
	svc := identity.NewService(parts.store, hasher, issuer, identity.Options{
		ClientKey: grpcauth.ClientKey,
		Logger:    p.logger,
	})
	identitygrpc.Register(srv.GRPC(), svc, parts.keys)

	// UserActivity streams end when the server starts its graceful stop, so they do not hold it up.
	activityCtx, stopActivity := context.WithCancel(ctx)
	srv.OnShutdown(stopActivity)
	p.runners = append(p.runners, func(context.Context) error { return svc.Run(activityCtx) })

	created, generated, err := svc.EnsureAdmin(ctx, p.cfg.AdminEmail, p.env.Getenv("LASTMILE_ADMIN_PASSWORD"))
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if created {
		email := p.cfg.AdminEmail
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
// when identity runs here, else from identity's GetJwks over gRPC. Without either, bearer tokens are refused.
func (p *process) tokenVerifier(ident *identityParts) (auth.TokenVerifier, error) {
	if !p.cfg.hostsGRPC() {
		return nil, nil // a gateway-only process forwards tokens and verifies none
	}
	var fetch jwt.FetcherFunc
	switch {
	case ident != nil:
		fetch = func(ctx context.Context) ([]jwt.PublicKey, error) {
			keys, err := ident.keys.PublicKeys(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]jwt.PublicKey, 0, len(keys))
			for _, k := range keys {
				out = append(out, jwt.PublicKey{KID: k.KID, Key: ed25519.PublicKey(k.PublicKey)})
			}
			return out, nil
		}
	case p.cfg.IdentityAddr != "":
		conn, err := p.dial("identity", "lastmile.identity.v1.AuthService", p.clientIdentity())
		if err != nil {
			return nil, err
		}
		client := identityv1.NewAuthServiceClient(conn)
		fetch = func(ctx context.Context) ([]jwt.PublicKey, error) {
			set, err := client.GetJwks(ctx, &identityv1.GetJwksRequest{})
			if err != nil {
				return nil, grpcerr.FromStatus(err)
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
	return jwt.NewVerifier(jwt.VerifierConfig{Issuer: tokenIssuer, Audience: tokenAudience, Keys: cache})
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
