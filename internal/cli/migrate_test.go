package cli

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/eventlog/sqllog"
)

// TestMigrateSQLite runs `lastmile migrate` twice on a fresh data directory: every service's database
// file gets its tables, and the second run is a no-op.
func TestMigrateSQLite(t *testing.T) {
	dir := t.TempDir()
	for run := range 2 {
		var out bytes.Buffer
		err := Run(context.Background(), []string{"lastmile", "migrate", "--data-dir", dir}, Env{Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatalf("migrate run %d: %v\n%s", run, err, out.String())
		}
		// The first run says what it applied, file by file range; the second, that nothing was left.
		said := func(m database.Migrations) string {
			files, err := fs.Glob(m.FS, "*.sql")
			if err != nil || len(files) == 0 {
				t.Fatalf("migrations of %s: %v, %v", m.Service, files, err)
			}
			switch {
			case run == 1:
				return ""
			case len(files) == 1:
				return ": applied " + files[0]
			}
			return fmt.Sprintf(": applied %d, %s to %s", len(files), files[0], files[len(files)-1])
		}
		lines := strings.Split(out.String(), "\n")
		for _, m := range modules() {
			if m.store == nil {
				continue
			}
			s := m.name
			if want := "migrate: " + s + " up to date (sqlite)" + said(m.store.SQLite); !slices.Contains(lines, want) {
				t.Errorf("migrate run %d output lacks the line %q:\n%s", run, want, out.String())
			}
			if m.store.EventLog {
				if want := "migrate: " + s + " event log up to date (sqlite)" + said(sqllog.Migrations(database.SQLite, s)); !slices.Contains(lines, want) {
					t.Errorf("migrate run %d output lacks the line %q:\n%s", run, want, out.String())
				}
			}
			if want := "migrate: " + s + " jobs up to date (sqlite)"; m.store.Jobs && !strings.Contains(out.String(), want) {
				t.Errorf("migrate run %d output lacks %q:\n%s", run, want, out.String())
			}
		}
	}
	for _, st := range [][2]string{{"identity", "users"}, {"courier", "couriers"}, {"identity", "event_log"}, {"dispatch", "tasks"}, {"dispatch", "event_log"}, {"dispatch", "river_job"}} {
		service, table := st[0], st[1]
		db, err := database.OpenSQLite(context.Background(), filepath.Join(dir, service+".db"))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		err = db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&n)
		db.Close()
		if err != nil || n != 1 {
			t.Errorf("%s.db: table %s count = %d (err %v), want 1", service, table, n, err)
		}
	}
}

// TestMigratePostgres migrates every service into its own schema of one PostgreSQL database.
func TestMigratePostgres(t *testing.T) {
	url := databasetest.PostgresURL(t)
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"lastmile", "migrate", "--database-url", url}, Env{Stdout: &out, Stderr: &out}); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	var courier database.Migrations
	for _, m := range modules() {
		if m.name == "courier" {
			courier = m.store.Postgres
		}
	}
	files, err := fs.Glob(courier.FS, "*.sql")
	if err != nil || len(files) < 2 {
		t.Fatalf("courier's PostgreSQL migrations: %v, %v", files, err)
	}
	if want := fmt.Sprintf("migrate: courier up to date (postgres): applied %d, %s to %s\n", len(files), files[0], files[len(files)-1]); !strings.Contains(out.String(), want) {
		t.Errorf("first migrate's output lacks %q:\n%s", want, out.String())
	}
	out.Reset()
	if err := Run(context.Background(), []string{"lastmile", "migrate", "--database-url", url}, Env{Stdout: &out, Stderr: &out}); err != nil {
		t.Fatalf("migrate again: %v\n%s", err, out.String())
	}
	if want := "migrate: courier up to date (postgres)\n"; !strings.Contains(out.String(), want) || strings.Contains(out.String(), "applied") {
		t.Errorf("second migrate's output = %q, want %q and nothing applied", out.String(), want)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, st := range [][2]string{{"identity", "users"}, {"courier", "couriers"}, {"identity", "event_log"}, {"dispatch", "tasks"}, {"dispatch", "event_log"}, {"dispatch", "river_job"}} {
		service, table := st[0], st[1]
		var n int
		err := pool.QueryRow(context.Background(),
			`SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2`, service, table).Scan(&n)
		if err != nil || n != 1 {
			t.Errorf("schema %s: table %s count = %d (err %v), want 1", service, table, n, err)
		}
	}
}

func TestMigrateRejectsUnknownDatabaseURL(t *testing.T) {
	err := Run(context.Background(), []string{"lastmile", "migrate", "--database-url", "mysql://x"}, Env{})
	if err == nil || ExitCode(err) != 2 {
		t.Errorf("migrate --database-url mysql://x = %v (exit %d), want a usage error", err, ExitCode(err))
	}
	// What is not a postgres:// URL is refused, password redacted, rather than read as "SQLite in the data
	// directory": the data would not be where the operator thinks.
	for url, shown := range map[string]string{
		"host=db.internal port=5432 user=lm password=kv-secret dbname=lastmile": "host=db.internal port=5432 user=lm password=xxxxx dbname=lastmile",
		"/var/lib/lastmile/lastmile.db":                                         "/var/lib/lastmile/lastmile.db",
		"sqlite:/var/lib/lastmile/lastmile.db":                                  "sqlite:/var/lib/lastmile/lastmile.db",
	} {
		dir := t.TempDir()
		// serve gets a context already done, so that one that accepted the URL stops at once.
		stopped, stop := context.WithCancel(context.Background())
		stop()
		for _, args := range [][]string{{"migrate"}, {"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}} {
			cmd := args[0]
			err := Run(stopped, append(append([]string{"lastmile"}, args...), "--data-dir", dir, "--database-url", url), Env{Getenv: envOf(nil), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})
			want := fmt.Sprintf("--database-url: %q is not a postgres:// or postgresql:// URL (SQLite takes none: its files are in --data-dir)", shown)
			if err == nil || err.Error() != want || ExitCode(err) != 2 {
				t.Errorf("%s --database-url %q = %v (exit %d), want %q (exit 2)", cmd, url, err, ExitCode(err), want)
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("--database-url %q left %d entries in the data directory, want none", url, len(entries))
		}
	}
}

// TestServeWithoutAutoMigrateRefusesAnUnmigratedDatabase: --auto-migrate=false on a data directory nobody
// migrated stops at start, saying what to run, instead of serving tables that do not exist.
func TestServeWithoutAutoMigrateRefusesAnUnmigratedDatabase(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	err := Run(context.Background(), []string{"lastmile", "serve", "--auto-migrate=false", "--data-dir", dir,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, Env{Stdout: &out, Stderr: &out})
	const prefix, suffix = "start identity: check migrations identity: ", " not applied (00001_init.sql first): run lastmile migrate, or start without --auto-migrate=false"
	if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.HasSuffix(err.Error(), suffix) {
		t.Fatalf("serve --auto-migrate=false on an empty data directory = %v, want %q…%q", err, prefix, suffix)
	}
	if got := ExitCode(err); got != 1 {
		t.Errorf("ExitCode = %d, want 1", got)
	}
}

// TestREADMEShowsTheNewerSchemaRefusalAsPrinted: the README's upgrade example (serve and migrate on a
// data directory whose dispatch database a lastmile with one migration more migrated) shows what this
// binary prints, numbers included; a new dispatch migration makes this fail until the README follows.
func TestREADMEShowsTheNewerSchemaRefusalAsPrinted(t *testing.T) {
	dir := t.TempDir()
	env := Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
	if err := Run(context.Background(), []string{"lastmile", "migrate", "--data-dir", dir}, env); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	db, err := database.OpenSQLite(context.Background(), filepath.Join(dir, "dispatch.db"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec("INSERT INTO goose_db_version (version_id, is_applied) SELECT max(version_id) + 1, 1 FROM goose_db_version")
	if cerr := db.Close(); err != nil || cerr != nil {
		t.Fatalf("add a newer version: %v, %v", err, cerr)
	}
	err = Run(context.Background(), []string{"lastmile", "migrate", "--data-dir", dir}, env)
	if err == nil {
		t.Fatal("migrate on a newer dispatch schema succeeded, want a refusal")
	}
	readme, rerr := os.ReadFile("../../README.md")
	if rerr != nil {
		t.Fatal(rerr)
	}
	msg := err.Error()
	short, _, _ := strings.Cut(msg, ": a newer lastmile")
	for _, want := range []string{
		"\n# lastmile: start dispatch: " + msg + "\n", // serve's
		"\n# lastmile: " + short + ": …\n",            // migrate's
	} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md lacks the line %q", strings.TrimSpace(want))
		}
	}
}
