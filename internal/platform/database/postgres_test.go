package database_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

func TestOpenPostgresErrorsHidePassword(t *testing.T) {
	ctx := testContext(t)
	for _, u := range []string{
		// Port 1 refuses connections on any test machine.
		"postgres://lastmile:s3cretpw@127.0.0.1:1/lastmile?sslmode=disable&connect_timeout=5",
		"postgres://lastmile:s3cretpw@127.0.0.1:notaport/lastmile",
		"postgres://lastmile:s3cretpw@127.0.0.1/lastmile?pool_max_conns=many",
	} {
		pool, err := database.OpenPostgres(ctx, u, database.PostgresOptions{})
		if err == nil {
			pool.Close()
			t.Errorf("OpenPostgres(%q) succeeded, want an error", database.RedactURL(u))
			continue
		}
		if strings.Contains(err.Error(), "s3cretpw") {
			t.Errorf("OpenPostgres error %q shows the password", err)
		}
	}
}

func TestOpenPostgresRejectsBadOptions(t *testing.T) {
	ctx := testContext(t)
	for _, opts := range []database.PostgresOptions{
		{Schema: "Identity"},
		{Schema: "pg_catalog"},
		{Schema: "a; DROP TABLE x"},
		{MaxConns: -1},
		{ConnectTimeout: -1},
	} {
		pool, err := database.OpenPostgres(ctx, "postgres://127.0.0.1:1/x", opts)
		if err == nil {
			pool.Close()
			t.Errorf("OpenPostgres(%+v) succeeded, want an error", opts)
		}
	}
}

func TestOpenPostgresSchemaSetsSearchPath(t *testing.T) {
	ctx := testContext(t)
	u := databasetest.PostgresURL(t)
	pool, err := database.OpenPostgres(ctx, u, database.PostgresOptions{Schema: "courier", MaxConns: 3})
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	defer pool.Close()
	if got := pool.Config().MaxConns; got != 3 {
		t.Errorf("MaxConns = %d, want 3", got)
	}
	if _, err := pool.Exec(ctx, "CREATE SCHEMA courier"); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := pool.QueryRow(ctx, "SELECT current_schemas(false)").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"courier", "public"}, got); diff != "" {
		t.Errorf("current_schemas mismatch (-want +got):\n%s", diff)
	}
}
