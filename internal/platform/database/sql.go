package database

import (
	"fmt"
	"io/fs"
	"strings"
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
