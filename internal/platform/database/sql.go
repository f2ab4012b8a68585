package database

import (
	"fmt"
	"io/fs"
	"strings"

	"lastmile/internal/platform/apperr"
)

// EmbeddedMigrations returns the migrations of service found in directory dir of fsys, normally an
// embed.FS holding "migrations/*.sql". It panics when dir is not a valid path: callers pass a constant.
func EmbeddedMigrations(service string, fsys fs.FS, dir string) Migrations {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(fmt.Sprintf("%s migrations: %v", service, err))
	}
	return Migrations{Service: service, FS: sub}
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// ContainsPattern returns a LIKE pattern matching strings that contain s literally: LIKE's wildcards in s
// (and the escape character itself) are escaped, so queries must say ESCAPE '\'.
func ContainsPattern(s string) string {
	return "%" + likeEscaper.Replace(s) + "%"
}

// RowLimit returns how many rows a store read asked for limit returns: limit lowered to most (a service's
// MaxStoreLimit, one more than its largest page, so that the service learns whether another page
// follows). Invalid, naming the field "limit", when limit is not positive.
func RowLimit(limit, most int) (int, error) {
	if limit <= 0 {
		return 0, apperr.InvalidFields("invalid limit", apperr.FieldViolation{Field: "limit", Description: "must be positive"})
	}
	return min(limit, most), nil
}
