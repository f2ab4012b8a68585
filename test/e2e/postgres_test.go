package e2e_test

import (
	"net/http"
	"testing"

	"lastmile/internal/platform/database/databasetest"
)

// TestOnPostgreSQL runs the system with --database-url so every store is PostgreSQL (one schema per
// service, migrated at startup), then restarts it on the same database: accounts and couriers survive, and
// the signing key survives too, so a token issued before the restart still verifies after it.
func TestOnPostgreSQL(t *testing.T) {
	url := databasetest.PostgresURL(t)
	env := map[string]string{"LASTMILE_ADMIN_EMAIL": adminEmail, "LASTMILE_ADMIN_PASSWORD": adminPassword}

	first := startEnv(t, t.TempDir(), env, "--database-url", url)
	admin := first.login(t, adminEmail, adminPassword)
	courierUser := first.createUser(t, admin.access, "pg-courier@example.com", "correct horse battery", "ROLE_COURIER")
	code, _, body := first.rest(t, http.MethodPost, "/v1/couriers", admin.access,
		`{"userId":"`+courierUser+`","transportMode":"TRANSPORT_MODE_CAR","capacity":2}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/couriers = %d %v, want 201", code, body)
	}
	courierID := str(body, "id")
	if err := first.stop(); err != nil {
		t.Fatalf("first run stopped with %v, want nil", err)
	}

	second := startEnv(t, t.TempDir(), env, "--database-url", url)
	// The token from the first run verifies: the key is in identity's schema, not in process memory.
	code, _, body = second.rest(t, http.MethodGet, "/v1/couriers/"+courierID, admin.access, "")
	if code != http.StatusOK || str(body, "userId") != courierUser {
		t.Fatalf("GET /v1/couriers/%s after restart = %d %v, want 200 with userId %s", courierID, code, body, courierUser)
	}
	second.login(t, "pg-courier@example.com", "correct horse battery")
}
