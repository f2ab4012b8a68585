package database_test

import (
	"os"
	"path/filepath"
	"testing"

	"lastmile/internal/platform/database"
)

func TestOpenSQLiteSettings(t *testing.T) {
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "data", "svc.db")
	db, err := database.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	defer db.Close()
	// No idle connections: every query below runs on a new connection, which proves the settings
	// are applied per connection, not once.
	db.SetMaxIdleConns(0)

	pragmas := []struct{ name, want string }{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "5000"},
		{"synchronous", "1"}, // NORMAL
	}
	for range 2 {
		for _, p := range pragmas {
			var got string
			if err := db.QueryRowContext(ctx, "PRAGMA "+p.name).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", p.name, err)
			}
			if got != p.want {
				t.Errorf("PRAGMA %s = %q, want %q", p.name, got, p.want)
			}
		}
	}

	for _, tc := range []struct {
		path string
		want os.FileMode
	}{{filepath.Dir(path), 0o700 | os.ModeDir}, {path, 0o600}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModeDir | os.ModePerm); got != tc.want {
			t.Errorf("mode of %s = %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestOpenSQLiteEnforcesForeignKeys(t *testing.T) {
	ctx := testContext(t)
	db, err := database.OpenSQLite(ctx, filepath.Join(t.TempDir(), "fk.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	defer db.Close()
	for _, stmt := range []string{
		"CREATE TABLE parent (id INTEGER PRIMARY KEY)",
		"CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent (id))",
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO child (id, parent_id) VALUES (1, 42)"); err == nil {
		t.Error("inserting a child of a missing parent succeeded, want a foreign key error")
	}
}

func TestOpenSQLiteIsDurable(t *testing.T) {
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "durable.db")
	db, err := database.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT); INSERT INTO kv VALUES ('a', 'b')"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = database.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	var got string
	if err := db.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = 'a'").Scan(&got); err != nil || got != "b" {
		t.Errorf("after reopen, v = %q, %v, want %q, nil", got, err, "b")
	}
}

func TestOpenSQLiteRejectsNonDurablePaths(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file:x.db?mode=memory", "x.db?_pragma=foo", filepath.Join(t.TempDir())} {
		db, err := database.OpenSQLite(testContext(t), path)
		if err == nil {
			db.Close()
			t.Errorf("OpenSQLite(%q) succeeded, want an error", path)
		}
	}
}
