package database_test

import (
	"context"
	"database/sql"
	"testing"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

// TestConstraints maps real constraint violations of both engines to the domain's codes and messages.
func TestConstraints(t *testing.T) {
	c := database.Constraints{
		Unique:     map[string]string{"parents.name": "name taken", "parents_name_key": "name taken", "parents.name_alias": "alias taken"},
		ForeignKey: "parent not found",
	}
	engines := []struct {
		name string
		open func(t *testing.T) *sql.DB
		mapE func(error, string) error
	}{
		{"sqlite", func(t *testing.T) *sql.DB { return databasetest.SQLite(t) }, c.MapSQLite},
		{"postgres", func(t *testing.T) *sql.DB {
			db := database.SQLDB(databasetest.Postgres(t, "constraints"))
			t.Cleanup(func() { db.Close() })
			return db
		}, c.MapPostgres},
	}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			ctx := context.Background()
			db := e.open(t)
			for _, stmt := range []string{
				`CREATE TABLE parents (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, size INTEGER CHECK (size > 0))`,
				`CREATE TABLE children (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL REFERENCES parents (id))`,
				`INSERT INTO parents (id, name, size) VALUES (1, 'a', 1)`,
			} {
				if _, err := db.ExecContext(ctx, stmt); err != nil {
					t.Fatalf("%s: %v", stmt, err)
				}
			}
			for _, tc := range []struct {
				stmt    string
				code    apperr.Code
				message string
			}{
				{`INSERT INTO parents (id, name, size) VALUES (2, 'a', 1)`, apperr.Conflict, "name taken"},
				{`INSERT INTO parents (id, name, size) VALUES (1, 'b', 1)`, apperr.Conflict, "already exists"},
				{`INSERT INTO children (id, parent) VALUES (1, 99)`, apperr.NotFound, "parent not found"},
				{`INSERT INTO parents (id, name, size) VALUES (3, 'c', 0)`, apperr.Invalid, "value out of range"},
			} {
				_, err := db.ExecContext(ctx, tc.stmt)
				if err == nil {
					t.Fatalf("%s succeeded, want a constraint violation", tc.stmt)
				}
				got := e.mapE(err, "insert")
				if apperr.CodeOf(got) != tc.code || apperr.MessageOf(got) != tc.message {
					t.Errorf("%s mapped to %v %q, want %v %q", tc.stmt, apperr.CodeOf(got), apperr.MessageOf(got), tc.code, tc.message)
				}
			}
		})
	}
}
