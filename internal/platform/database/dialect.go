// Package database opens the stores every lastmile service owns: SQLite (the embedded default, pure Go)
// and PostgreSQL (production, one schema per service). It also runs each service's embedded goose
// migrations, wraps transactions, and lets one SQL text serve both engines (SQLDB, Dialect.Time,
// ScanTime). Changes that watchers on every replica must see go through package eventlog; side
// effects that must happen once, through package jobs.
package database

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Dialect names the database engine behind a database URL.
type Dialect string

const (
	// SQLite is the embedded default: one file per service in the data directory.
	SQLite Dialect = "sqlite"
	// Postgres is PostgreSQL reached through pgx, one schema per service.
	Postgres Dialect = "postgres"
)

// DialectOf reports which engine a --database-url value selects. The empty string, "sqlite:<path>" and
// plain file paths select SQLite; "postgres://" and "postgresql://" URLs select PostgreSQL. Any other
// scheme (mysql://, http://, host:port, ...) is an error rather than a silently created file of that name.
func DialectOf(u string) (Dialect, error) {
	if u == "" {
		return SQLite, nil
	}
	scheme, _, hasScheme := strings.Cut(u, ":")
	// A one-letter "scheme" is a Windows drive (C:\data\x.db), and a "scheme" with characters no
	// scheme may contain is a path that happens to hold a colon (./a:b.db).
	if !hasScheme || len(scheme) == 1 || !schemeRE.MatchString(scheme) {
		return SQLite, nil
	}
	lower := strings.ToLower(u)
	switch {
	case strings.EqualFold(scheme, "sqlite"):
		return SQLite, nil
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return Postgres, nil
	}
	return "", fmt.Errorf("unsupported database url %q: want postgres://..., postgresql://..., sqlite:<path> or a file path", RedactURL(u))
}

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)

// SQLitePath returns the file path a SQLite database URL names: "sqlite:/var/lib/x.db",
// "sqlite:///var/lib/x.db" and "/var/lib/x.db" all give "/var/lib/x.db"; "" and "sqlite:" give "",
// which callers read as "the default location in the data directory".
func SQLitePath(u string) (string, error) {
	d, err := DialectOf(u)
	if err != nil {
		return "", err
	}
	if d != SQLite {
		return "", fmt.Errorf("database url %q is not a SQLite url", RedactURL(u))
	}
	if len(u) >= len("sqlite:") && strings.EqualFold(u[:len("sqlite:")], "sqlite:") {
		u = u[len("sqlite:"):]
		u = strings.TrimPrefix(u, "//")
	}
	return u, nil
}

// redacted replaces every secret RedactURL removes.
const redacted = "xxxxx"

var (
	// userinfoRE matches the password of scheme://user:password@host when the URL does not parse.
	userinfoRE = regexp.MustCompile(`(://[^:/@?#]*):[^@/?#]*@`)
	// keywordRE matches password=... in libpq keyword/value strings and unparseable query strings.
	keywordRE = regexp.MustCompile(`(?i)((?:^|[\s&?])[a-z_]*password=)('(?:[^'\\]|\\.)*'|[^\s&]*)`)
)

// RedactURL returns u with every password replaced by "xxxxx": the userinfo password and any query or
// keyword parameter whose name ends in "password" (pgx accepts ?password= and sslpassword=). It accepts
// URLs and libpq keyword/value strings, and redacts conservatively when u does not parse, so the result
// is always safe to log or put in an error.
func RedactURL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Scheme == "" || parsed.Opaque != "" {
		return keywordRE.ReplaceAllString(userinfoRE.ReplaceAllString(u, "${1}:"+redacted+"@"), "${1}"+redacted)
	}
	if parsed.User != nil {
		if _, has := parsed.User.Password(); has {
			parsed.User = url.UserPassword(parsed.User.Username(), redacted)
		}
	}
	if parsed.RawQuery != "" {
		q, err := url.ParseQuery(parsed.RawQuery)
		if err != nil {
			parsed.RawQuery = keywordRE.ReplaceAllString(parsed.RawQuery, "${1}"+redacted)
		} else {
			changed := false
			for k := range q {
				if strings.HasSuffix(strings.ToLower(k), "password") {
					q[k] = []string{redacted}
					changed = true
				}
			}
			if changed {
				parsed.RawQuery = q.Encode()
			}
		}
	}
	return parsed.String()
}
