package database

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// defaultConnectTimeout bounds one connection attempt when neither the URL (connect_timeout) nor
// PostgresOptions set it, so an unreachable server fails a request instead of hanging it.
const defaultConnectTimeout = 10 * time.Second

// PostgresOptions tunes OpenPostgres. The zero value is valid.
type PostgresOptions struct {
	// MaxConns caps the pool; 0 keeps the URL's pool_max_conns or pgx's default (max(4, NumCPU)).
	MaxConns int32
	// Schema, when set, becomes the first entry of every connection's search_path ("schema, public"),
	// so a service's unqualified table names resolve to its own schema. It must be a valid schema
	// name as accepted by Migrations.Service.
	Schema string
	// ConnectTimeout bounds each connection attempt; 0 keeps the URL's connect_timeout or 10 s.
	ConnectTimeout time.Duration
}

// OpenPostgres opens a pgx pool for a postgres:// URL and pings the server with ctx. Errors never
// contain the URL's password. The caller closes the pool.
func OpenPostgres(ctx context.Context, u string, opts PostgresOptions) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		// pgconn already redacts the password in parse errors; redact again in case a future
		// version does not.
		return nil, fmt.Errorf("parse postgres url %s: %s", RedactURL(u), redactIn(err.Error(), u))
	}
	if opts.MaxConns < 0 {
		return nil, fmt.Errorf("open postgres: MaxConns %d is negative", opts.MaxConns)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.ConnectTimeout < 0 {
		return nil, fmt.Errorf("open postgres: ConnectTimeout %v is negative", opts.ConnectTimeout)
	}
	switch {
	case opts.ConnectTimeout > 0:
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	case cfg.ConnConfig.ConnectTimeout == 0:
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if opts.Schema != "" {
		if err := validSchema(opts.Schema); err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		// A startup parameter costs no extra round trip (an AfterConnect SET would) and survives
		// DISCARD ALL from poolers.
		cfg.ConnConfig.RuntimeParams["search_path"] = searchPath(opts.Schema)
	}
	afterConnect := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		m := conn.TypeMap()
		m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{unwrapPQArrays}, m.TryWrapEncodePlanFuncs...)
		if afterConnect != nil {
			return afterConnect(ctx, conn)
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres %s: %s", RedactURL(u), redactIn(err.Error(), u))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping postgres %s: %w", RedactURL(u), redactErr(err, u))
	}
	return pool, nil
}

// schemaRE accepts lower-case unquoted identifiers only, so schema names never need quoting in goose's
// version table name or in log lines, and cannot collide with PostgreSQL's reserved pg_ prefix.
var schemaRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

func validSchema(s string) error {
	if !schemaRE.MatchString(s) || strings.HasPrefix(s, "pg_") {
		return fmt.Errorf("invalid schema name %q: want [a-z][a-z0-9_]*, at most 63 bytes, not pg_*", s)
	}
	return nil
}

func searchPath(schema string) string {
	return pgx.Identifier{schema}.Sanitize() + ", public"
}

// redactIn removes the password of u from msg, for error texts produced by libraries.
func redactIn(msg, u string) string {
	if pw := passwordOf(u); pw != "" {
		msg = strings.ReplaceAll(msg, pw, redacted)
	}
	return msg
}

// redactErr returns err unchanged unless its text contains the password of u, so callers keep
// errors.Is/As on the usual path (pgconn never prints passwords) and lose nothing but the chain when
// redaction is needed.
func redactErr(err error, u string) error {
	if pw := passwordOf(u); pw != "" && strings.Contains(err.Error(), pw) {
		return errors.New(strings.ReplaceAll(err.Error(), pw, redacted))
	}
	return err
}

// passwordOf returns the password in u, from the URL's userinfo or, failing that, from what pgx parses
// (query parameters, keyword/value strings, PGPASSWORD).
func passwordOf(u string) string {
	if parsed, err := url.Parse(u); err == nil && parsed.User != nil {
		if pw, ok := parsed.User.Password(); ok && pw != "" {
			return pw
		}
	}
	if m := userinfoRE.FindStringSubmatchIndex(u); m != nil {
		// Unparseable URL: take what sits between "user:" and "@".
		return strings.TrimSuffix(u[m[3]+1:m[1]], "@")
	}
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return ""
	}
	return cfg.Password
}
