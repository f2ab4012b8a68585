package database_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
		{"temp_store", "2"},  // MEMORY
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

func TestOpenSQLiteCreatesOnlyTheDatabase(t *testing.T) {
	dir := t.TempDir()
	db, err := database.OpenSQLite(testContext(t), filepath.Join(dir, "new.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The database is made under a temporary name and linked into place; nothing else stays behind.
	if got, want := dirNames(t, dir), []string{"new.db"}; !slices.Equal(got, want) {
		t.Errorf("files after creating new.db = %q, want %q", got, want)
	}
}

// sqliteFile returns the bytes of a sound SQLite database with a few pages of data.
func sqliteFile(t *testing.T) []byte {
	t.Helper()
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "good.db")
	db, err := database.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if _, err := db.ExecContext(ctx, "INSERT INTO kv VALUES (?, ?)", i, strings.Repeat("v", 100)); err != nil {
			t.Fatal(err)
		}
	}
	// Closing checkpoints the WAL into the file.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8*4096 {
		t.Fatalf("test database is %d bytes, want at least 8 pages", len(b))
	}
	return b
}

func TestOpenSQLiteRefusesBadFiles(t *testing.T) {
	good := sqliteFile(t)
	overwritten := bytes.Clone(good)
	copy(overwritten[2*4096:3*4096], bytes.Repeat([]byte{0x55}, 4096)) // page 3, a b-tree page of kv

	const advice = "; restore it from a backup, or remove it to start with an empty database"
	tests := []struct {
		name    string
		content []byte
		problem string // what the error says after "open sqlite <path>: the file "
	}{
		{"empty", []byte{}, "is empty (0 bytes)"},
		{"shorter than the header", good[:50], "is truncated (50 bytes, shorter than the 100-byte SQLite header)"},
		{"not SQLite", []byte(strings.Repeat("name,email\nann,ann@example.com\n", 10)), "is not a SQLite database (it does not start with the SQLite header)"},
		{"truncated", good[:len(good)/2], "is damaged (database disk image is malformed (11))"},
		{"damaged page", overwritten, "is damaged (database disk image is malformed (11))"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "svc.db")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := database.OpenSQLite(testContext(t), path)
			if err == nil {
				db.Close()
				t.Fatalf("OpenSQLite(%s) succeeded, want an error", tt.name)
			}
			if got, want := err.Error(), "open sqlite "+path+": the file "+tt.problem+advice; got != want {
				t.Errorf("OpenSQLite error =\n%s\nwant\n%s", got, want)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.content) {
				t.Errorf("OpenSQLite changed the refused file: %d bytes, want the same %d bytes", len(got), len(tt.content))
			}
			if got, want := dirNames(t, dir), []string{"svc.db"}; !slices.Equal(got, want) {
				t.Errorf("files after the refusal = %q, want %q", got, want)
			}
		})
	}
}

func TestOpenSQLiteReportsQuickCheckFindings(t *testing.T) {
	// An index whose entries disagree with its table: every page is readable, so only quick_check's
	// report tells (with writable_schema, the index is declared over a column it was not built from).
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "svc.db")
	db, err := database.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	for _, stmt := range []string{
		"CREATE TABLE kv (k INTEGER PRIMARY KEY, a TEXT NOT NULL, b TEXT)",
		"INSERT INTO kv (a, b) VALUES ('x', NULL), ('y', NULL)",
		"PRAGMA writable_schema = ON",
		"UPDATE sqlite_schema SET sql = 'CREATE TABLE kv (k INTEGER PRIMARY KEY, a TEXT, b TEXT NOT NULL)' WHERE name = 'kv'",
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	db, err = database.OpenSQLite(ctx, path)
	if err == nil {
		db.Close()
		t.Fatal("OpenSQLite of a file that fails quick_check succeeded, want an error")
	}
	want := "open sqlite " + path + ": the file fails its integrity check (PRAGMA quick_check: " +
		"NULL value in kv.b; NULL value in kv.b); restore it from a backup, or remove it to start with an empty database"
	if got := err.Error(); got != want {
		t.Errorf("OpenSQLite error =\n%s\nwant\n%s", got, want)
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
		t.Errorf("OpenSQLite changed the refused file (read error %v)", err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
