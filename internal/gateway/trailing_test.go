package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/gateway"
)

func TestTrailingBytesAfterJSON(t *testing.T) {
	for _, body := range []string{`{"email":"a@example.com"}{"role":"ROLE_ADMIN"}`, `{"email":"a@example.com"} x`, `{"email":"a@example.com"}}`} {
		t.Run(body, func(t *testing.T) {
			srv, _ := startUsersGateway(t, &fakeUsers{}, gateway.Config{})

			resp, got := do(t, srv, http.MethodPost, "/v1/users", strings.NewReader(body), jsonHeader())

			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400; body %s", resp.StatusCode, got)
			}
			if diff := cmp.Diff(errorJSON(400, "INVALID_ARGUMENT", "unexpected data after the JSON value"), decode(t, got)); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTrailingWhitespaceAccepted(t *testing.T) {
	srv, _ := startUsersGateway(t, &fakeUsers{}, gateway.Config{})

	resp, body := do(t, srv, http.MethodPost, "/v1/users", strings.NewReader("{\"email\":\"a@example.com\"}\r\n\t "), jsonHeader())

	if got, want := resp.StatusCode, http.StatusCreated; got != want {
		t.Fatalf("status = %d, want %d; body %s", got, want, body)
	}
}
