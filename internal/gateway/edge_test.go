package gateway_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/gen/openapi"
	"lastmile/internal/gateway"
	"lastmile/internal/platform/grpcserver/grpctest"
	"lastmile/internal/platform/telemetry"
)

// fakeUsers answers the UserService calls the edge tests make and records the last ListUsers request.
type fakeUsers struct {
	identityv1.UnimplementedUserServiceServer

	mu   sync.Mutex
	list *identityv1.ListUsersRequest
}

func (f *fakeUsers) CreateUser(_ context.Context, req *identityv1.CreateUserRequest) (*identityv1.User, error) {
	return &identityv1.User{Id: "0190b000-0000-7000-8000-00000000000a", Email: req.GetEmail(), DisplayName: req.GetDisplayName()}, nil
}

func (f *fakeUsers) ListUsers(_ context.Context, req *identityv1.ListUsersRequest) (*identityv1.ListUsersResponse, error) {
	f.mu.Lock()
	f.list = req
	f.mu.Unlock()
	var users []*identityv1.User
	for range 40 { // a response well over the gzip threshold
		users = append(users, &identityv1.User{Id: "0190b000-0000-7000-8000-00000000000a", Email: "someone@example.com", DisplayName: "Some One"})
	}
	return &identityv1.ListUsersResponse{Users: users, TotalSize: 40}, nil
}

func (f *fakeUsers) GetUser(_ context.Context, req *identityv1.GetUserRequest) (*identityv1.User, error) {
	return &identityv1.User{Id: req.GetId(), Email: "a@example.com"}, nil
}

func (f *fakeUsers) lastList() *identityv1.ListUsersRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.list
}

// logRecord is one captured log record with its attributes and the request id of its context.
type logRecord struct {
	level     slog.Level
	message   string
	requestID string
	attrs     map[string]any
}

// captureHandler is a slog.Handler that keeps every record.
type captureHandler struct {
	mu      sync.Mutex
	records []logRecord
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *captureHandler) WithGroup(string) slog.Handler            { return h }

func (h *captureHandler) Handle(ctx context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, message: r.Message, requestID: telemetry.RequestID(ctx), attrs: map[string]any{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Resolve().Any()
		return true
	})
	h.mu.Lock()
	h.records = append(h.records, rec)
	h.mu.Unlock()
	return nil
}

// accessLines returns the access log records.
func (h *captureHandler) accessLines() []logRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logRecord
	for _, r := range h.records {
		if r.message == "http request" {
			out = append(out, r)
		}
	}
	return out
}

// startUsersGateway runs a gateway in front of a fake UserService and returns it with the log capture.
func startUsersGateway(t *testing.T, fake *fakeUsers, cfg gateway.Config) (*httptest.Server, *captureHandler) {
	t.Helper()
	s := grpc.NewServer()
	identityv1.RegisterUserServiceServer(s, fake)
	conn := grpctest.ServeGRPC(t, s)
	logs := &captureHandler{}
	cfg.Logger = slog.New(logs)
	g, err := gateway.New(t.Context(), cfg, []gateway.Service{{
		Name: "lastmile.identity.v1.UserService", Conn: conn, Register: gateway.Routes(identityv1.RegisterUserServiceHandlerClient, identityv1.NewUserServiceClient),
	}})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return srv, logs
}

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

func TestCreateAnswers201WithLocation(t *testing.T) {
	srv, _ := startUsersGateway(t, &fakeUsers{}, gateway.Config{})

	resp, body := do(t, srv, http.MethodPost, "/v1/users",
		strings.NewReader(`{"email":"new@example.com","password":"correct horse battery","displayName":"New"}`), jsonHeader())

	if got, want := resp.StatusCode, http.StatusCreated; got != want {
		t.Fatalf("POST /v1/users status = %d, want %d; body %s", got, want, body)
	}
	if got, want := resp.Header.Get("Location"), "/v1/users/0190b000-0000-7000-8000-00000000000a"; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if got, want := decode(t, body)["email"], "new@example.com"; got != want {
		t.Errorf("body email = %v, want %q", got, want)
	}
}

func TestReadsAnswer200WithoutLocation(t *testing.T) {
	srv, _ := startUsersGateway(t, &fakeUsers{}, gateway.Config{})

	resp, body := do(t, srv, http.MethodGet, "/v1/users/0190b000-0000-7000-8000-00000000000a", nil, nil)

	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Fatalf("GET status = %d, want %d; body %s", got, want, body)
	}
	if got := resp.Header.Get("Location"); got != "" {
		t.Errorf("Location = %q, want none", got)
	}
}

func TestUnsupportedMediaType(t *testing.T) {
	srv, _ := startUsersGateway(t, &fakeUsers{}, gateway.Config{})

	resp, body := do(t, srv, http.MethodPost, "/v1/users", strings.NewReader(`email=a%40example.com`),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})

	if got, want := resp.StatusCode, http.StatusUnsupportedMediaType; got != want {
		t.Fatalf("status = %d, want %d; body %s", got, want, body)
	}
	want := errorJSON(415, "INVALID_ARGUMENT", `the request body must be JSON (Content-Type: application/json), not "application/x-www-form-urlencoded"`)
	if diff := cmp.Diff(want, decode(t, body)); diff != "" {
		t.Errorf("body mismatch (-want +got):\n%s", diff)
	}
}

// A compressed body is 415 saying so, not "invalid JSON"; identity is no coding.
func TestCompressedBodyIsUnsupported(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write([]byte(`{"email":"new@example.com"}`)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, encoding string
		body           []byte
		want           int
		message        string
	}{
		{"/v1/users", "gzip", gz.Bytes(), http.StatusUnsupportedMediaType, `the request body must be sent uncompressed: Content-Encoding "gzip" is not accepted`},
		{"/v1/users", "identity, br", gz.Bytes(), http.StatusUnsupportedMediaType, `the request body must be sent uncompressed: Content-Encoding "br" is not accepted`},
		{"/v1/users", "identity", []byte(`{"email":"new@example.com"}`), http.StatusCreated, ""},
	} {
		t.Run(tt.path+" "+tt.encoding, func(t *testing.T) {
			srv, _ := startUsersGateway(t, &fakeUsers{}, gateway.Config{})
			resp, body := do(t, srv, http.MethodPost, tt.path, bytes.NewReader(tt.body),
				http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {tt.encoding}})
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.want, body)
			}
			if tt.message == "" {
				return
			}
			if got := resp.Header.Get("Accept-Encoding"); got != "identity" {
				t.Errorf("Accept-Encoding = %q, want identity", got)
			}
			if diff := cmp.Diff(errorJSON(415, "INVALID_ARGUMENT", tt.message), decode(t, body)); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// A write carrying an HTTP precondition is refused rather than applied unconditionally: the gateway does
// not evaluate If-Match (the etag field of the body is the precondition). Reads may carry one.
func TestPreconditionHeadersOnWritesAreRefused(t *testing.T) {
	const id = "0190b000-0000-7000-8000-00000000000a"
	for _, tt := range []struct {
		method, path, header, value, body string
		want                              int
		message                           string
	}{
		{http.MethodPatch, "/v1/users/" + id, "If-Match", `"3"`, `{"displayName":"Ada"}`, http.StatusBadRequest,
			"If-Match is not read: send the etag you read in the request body's etag field (a change since is 409 ABORTED)"},
		{http.MethodPatch, "/v1/users/" + id, "If-Unmodified-Since", "Wed, 02 Dec 2026 04:00:00 GMT", `{"displayName":"Ada"}`, http.StatusBadRequest,
			"If-Unmodified-Since is not read: send the etag you read in the request body's etag field (a change since is 409 ABORTED)"},
		{http.MethodPost, "/v1/users", "If-None-Match", "*", `{"email":"new@example.com"}`, http.StatusBadRequest,
			"If-None-Match is not read: this route takes no precondition"},
		{http.MethodGet, "/v1/users/" + id, "If-None-Match", `"3"`, "", http.StatusOK, ""},
	} {
		t.Run(tt.method+" "+tt.header, func(t *testing.T) {
			srv, _ := startUsersGateway(t, &fakeUsers{}, gateway.Config{})
			h := http.Header{tt.header: {tt.value}}
			var body io.Reader
			if tt.body != "" {
				h.Set("Content-Type", "application/json")
				body = strings.NewReader(tt.body)
			}
			resp, got := do(t, srv, tt.method, tt.path, body, h)
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.want, got)
			}
			if tt.message == "" {
				return
			}
			if diff := cmp.Diff(errorJSON(400, "INVALID_ARGUMENT", tt.message), decode(t, got)); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJSONMediaTypesAccepted(t *testing.T) {
	for _, ct := range []string{"", "application/json", "application/json; charset=utf-8", "application/merge-patch+json"} {
		t.Run(ct, func(t *testing.T) {
			srv, _ := startUsersGateway(t, &fakeUsers{}, gateway.Config{})
			h := http.Header{}
			if ct != "" {
				h.Set("Content-Type", ct)
			}
			resp, body := do(t, srv, http.MethodPost, "/v1/users", strings.NewReader(`{"email":"new@example.com"}`), h)
			if got, want := resp.StatusCode, http.StatusCreated; got != want {
				t.Errorf("Content-Type %q: status = %d, want %d; body %s", ct, got, want, body)
			}
		})
	}
}

func TestQueryParameters(t *testing.T) {
	tests := []struct {
		name, query string
		wantStatus  int
		wantMessage string
		want        *identityv1.ListUsersRequest
	}{
		{name: "JSON names", query: "pageSize=5&role=ROLE_ADMIN", wantStatus: 200,
			want: &identityv1.ListUsersRequest{PageSize: 5, Role: identityv1.Role_ROLE_ADMIN}},
		{name: "proto names", query: "page_size=7&search=ann", wantStatus: 200,
			want: &identityv1.ListUsersRequest{PageSize: 7, Search: "ann"}},
		{name: "unknown", query: "pageSize=5&rolee=ROLE_ADMIN", wantStatus: 400,
			wantMessage: `unknown query parameter "rolee"`},
		{name: "unknown nested", query: "role.name=x", wantStatus: 400,
			wantMessage: `unknown query parameter "role.name"`},
		// Values that do not parse are answered in words, naming the parameter as sent, never Go's
		// strconv errors.
		{name: "not an integer", query: "pageSize=abc", wantStatus: 400,
			wantMessage: `pageSize must be an integer from -2147483648 to 2147483647 (got "abc")`},
		{name: "integer out of range", query: "search=x&page_size=99999999999", wantStatus: 400,
			wantMessage: `pageSize must be an integer from -2147483648 to 2147483647 (got "99999999999")`},
		{name: "unknown enum value", query: "role=ADMIN", wantStatus: 400,
			wantMessage: `role must be one of ROLE_CUSTOMER, ROLE_COURIER, ROLE_DISPATCHER, ROLE_ADMIN (got "ADMIN")`},
		{name: "given twice", query: "pageSize=1&pageSize=2", wantStatus: 400,
			wantMessage: `pageSize may be given once, not 2 times`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeUsers{}
			srv, _ := startUsersGateway(t, fake, gateway.Config{})

			resp, body := do(t, srv, http.MethodGet, "/v1/users?"+tt.query, nil, nil)

			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET /v1/users?%s status = %d, want %d; body %s", tt.query, resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus != 200 {
				if diff := cmp.Diff(errorJSON(400, "INVALID_ARGUMENT", tt.wantMessage), decode(t, body)); diff != "" {
					t.Errorf("body mismatch (-want +got):\n%s", diff)
				}
				if fake.lastList() != nil {
					t.Errorf("the service was called")
				}
				return
			}
			got := fake.lastList()
			if got.GetPageSize() != tt.want.GetPageSize() || got.GetRole() != tt.want.GetRole() || got.GetSearch() != tt.want.GetSearch() {
				t.Errorf("ListUsers got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestQueryParametersOnBodyRoutes(t *testing.T) {
	tests := []struct {
		name, method, path, body, want string
	}{
		{"body star route", http.MethodPost, "/v1/users?email=x@example.com", `{}`,
			`query parameter "email" is not accepted: this route reads every field from the JSON body`},
		{"unknown on a body star route", http.MethodPost, "/v1/users?dryRun=true", `{}`,
			`unknown query parameter "dryRun"`},
		{"path variable", http.MethodGet, "/v1/users/0190b000-0000-7000-8000-00000000000a?id=other", ``,
			`query parameter "id" is not accepted: the path or the body sets it`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := startUsersGateway(t, &fakeUsers{}, gateway.Config{})

			resp, body := do(t, srv, tt.method, tt.path, strings.NewReader(tt.body), jsonHeader())

			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("%s %s status = %d, want 400; body %s", tt.method, tt.path, resp.StatusCode, body)
			}
			if diff := cmp.Diff(errorJSON(400, "INVALID_ARGUMENT", tt.want), decode(t, body)); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	srv, _ := startUsersGateway(t, &fakeUsers{}, gateway.Config{})

	resp, body := do(t, srv, http.MethodOptions, "/v1/users", nil, nil)

	if got, want := resp.StatusCode, http.StatusNoContent; got != want {
		t.Fatalf("OPTIONS status = %d, want %d; body %s", got, want, body)
	}
	if got, want := resp.Header.Get("Allow"), "GET, POST, HEAD, OPTIONS"; got != want {
		t.Errorf("Allow = %q, want %q", got, want)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("Access-Control-Allow-Origin = %q without CORS origins, want none", got)
	}

	resp, body = do(t, srv, http.MethodOptions, "/v1/nothing", nil, nil)
	if got, want := resp.StatusCode, http.StatusNotFound; got != want {
		t.Fatalf("OPTIONS unknown path status = %d, want %d", got, want)
	}
	if diff := cmp.Diff(errorJSON(404, "NOT_FOUND", "no such route"), decode(t, body)); diff != "" {
		t.Errorf("body mismatch (-want +got):\n%s", diff)
	}
}

func TestHead(t *testing.T) {
	srv, logs := startUsersGateway(t, &fakeUsers{}, gateway.Config{})

	resp, body := do(t, srv, http.MethodHead, "/v1/users/0190b000-0000-7000-8000-00000000000a", nil, nil)

	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Fatalf("HEAD status = %d, want %d", got, want)
	}
	if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	if len(body) != 0 {
		t.Errorf("HEAD body = %q, want none", body)
	}
	lines := logs.accessLines()
	if len(lines) != 1 {
		t.Fatalf("access log lines = %d, want 1", len(lines))
	}
	if got, want := lines[0].attrs["method"], "HEAD"; got != want {
		t.Errorf("logged method = %v, want %q", got, want)
	}
}

func TestCORS(t *testing.T) {
	const allowed = "https://ops.example.com"
	srv, _ := startUsersGateway(t, &fakeUsers{}, gateway.Config{CORSOrigins: []string{allowed}})

	t.Run("preflight from an allowed origin", func(t *testing.T) {
		resp, _ := do(t, srv, http.MethodOptions, "/v1/users", nil, http.Header{
			"Origin": {allowed}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization, content-type"},
		})
		if got, want := resp.StatusCode, http.StatusNoContent; got != want {
			t.Fatalf("status = %d, want %d", got, want)
		}
		for h, want := range map[string]string{
			"Access-Control-Allow-Origin":  allowed,
			"Access-Control-Allow-Methods": "GET, POST, HEAD, OPTIONS",
			"Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-Id",
			"Access-Control-Max-Age":       "600",
		} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s = %q, want %q", h, got, want)
			}
		}
	})
	t.Run("preflight from another origin", func(t *testing.T) {
		resp, _ := do(t, srv, http.MethodOptions, "/v1/users", nil, http.Header{
			"Origin": {"https://evil.example"}, "Access-Control-Request-Method": {"POST"},
		})
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Access-Control-Allow-Origin = %q, want none", got)
		}
	})
	t.Run("actual request", func(t *testing.T) {
		resp, _ := do(t, srv, http.MethodGet, "/v1/users/0190b000-0000-7000-8000-00000000000a", nil, http.Header{"Origin": {allowed}})
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != allowed {
			t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, allowed)
		}
		if got, want := resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id, Location, Retry-After, WWW-Authenticate"; got != want {
			t.Errorf("Access-Control-Expose-Headers = %q, want %q", got, want)
		}
		if got, want := resp.Header.Values("Vary"), []string{"Origin", "Accept-Encoding"}; !cmp.Equal(got, want) {
			t.Errorf("Vary = %q, want %q", got, want)
		}
	})
}

func TestCORSOriginsValidated(t *testing.T) {
	for _, o := range []string{"*", "https://ops.example.com/", "ops.example.com", "https://Ops.example.com", "ftp://x"} {
		if _, err := gateway.New(t.Context(), gateway.Config{CORSOrigins: []string{o}}, nil); err == nil {
			t.Errorf("New with CORS origin %q = nil error, want one", o)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	srv, _ := startUsersGateway(t, &fakeUsers{}, gateway.Config{})
	for _, path := range []string{"/v1/users/0190b000-0000-7000-8000-00000000000a", "/v1/nothing", "/openapi.json"} {
		resp, _ := do(t, srv, http.MethodGet, path, nil, nil)
		for h, want := range map[string]string{
			"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
				"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
			"X-Content-Type-Options":     "nosniff",
			"X-Frame-Options":            "DENY",
			"Referrer-Policy":            "no-referrer",
			"Cross-Origin-Opener-Policy": "same-origin",
		} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("GET %s: %s = %q, want %q", path, h, got, want)
			}
		}
	}
}

func TestGzip(t *testing.T) {
	srv, logs := startUsersGateway(t, &fakeUsers{}, gateway.Config{})
	// The transport must not decompress on its own, so that the test sees the encoding.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(client.CloseIdleConnections)
	get := func(t *testing.T, path, acceptEncoding string) (*http.Response, []byte) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		if acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", acceptEncoding)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}

	resp, plain := get(t, "/v1/users", "")
	if got := resp.Header.Get("Content-Encoding"); got != "" {
		t.Fatalf("without Accept-Encoding: Content-Encoding = %q, want none", got)
	}
	resp, zipped := get(t, "/v1/users", "br;q=1, gzip;q=0.8")
	if got, want := resp.Header.Get("Content-Encoding"), "gzip"; got != want {
		t.Fatalf("Content-Encoding = %q, want %q", got, want)
	}
	if got, want := resp.Header.Get("Vary"), "Accept-Encoding"; got != want {
		t.Errorf("Vary = %q, want %q", got, want)
	}
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	if err != nil {
		t.Fatalf("gzip.NewReader: %v", err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	if !bytes.Equal(unzipped, plain) {
		t.Errorf("gunzipped body differs from the plain one:\n%s\n%s", unzipped, plain)
	}
	if len(zipped) >= len(plain) {
		t.Errorf("gzipped %d bytes, plain %d: want smaller", len(zipped), len(plain))
	}
	lines := logs.accessLines()
	if got, want := lines[len(lines)-1].attrs["bytes"], int64(len(zipped)); got != want {
		t.Errorf("logged bytes = %v, want %d (as sent)", got, want)
	}

	resp, _ = get(t, "/v1/users", "gzip;q=0")
	if got := resp.Header.Get("Content-Encoding"); got != "" {
		t.Errorf("gzip;q=0: Content-Encoding = %q, want none", got)
	}
	// A small answer is not worth compressing.
	resp, _ = get(t, "/v1/users/0190b000-0000-7000-8000-00000000000a", "gzip")
	if got := resp.Header.Get("Content-Encoding"); got != "" {
		t.Errorf("small response: Content-Encoding = %q, want none", got)
	}
}

func TestAccessLog(t *testing.T) {
	srv, logs := startUsersGateway(t, &fakeUsers{}, gateway.Config{MaxBodyBytes: 64})
	requests := []struct {
		method, path, body string
		header             http.Header
		wantRoute          string
		wantStatus         int64
	}{
		{http.MethodGet, "/v1/users/0190b000-0000-7000-8000-00000000000a", "", nil, "/v1/users/{id=*}", 200},
		{http.MethodPost, "/v1/users", `{"email":"a@example.com"}`, jsonHeader(), "/v1/users", 201},
		{http.MethodGet, "/v1/nothing", "", nil, "unmatched", 404},
		{http.MethodPost, "/v1/users", `{"email":"` + strings.Repeat("a", 100) + `"}`, jsonHeader(), "unmatched", 413},
		{http.MethodPost, "/v1/users", `{"email":`, jsonHeader(), "/v1/users", 400},
		{http.MethodPost, "/v1/users", `a=b`, http.Header{"Content-Type": {"text/plain"}}, "/v1/users", 415},
	}
	for _, r := range requests {
		h := http.Header{"X-Request-Id": {"req-" + strings.ToLower(r.method)}}
		for k, v := range r.header {
			h[k] = v
		}
		do(t, srv, r.method, r.path, strings.NewReader(r.body), h)
	}

	lines := logs.accessLines()
	if len(lines) != len(requests) {
		t.Fatalf("access log lines = %d, want %d", len(lines), len(requests))
	}
	for i, r := range requests {
		got := lines[i]
		if got.level != slog.LevelInfo {
			t.Errorf("line %d level = %v, want INFO", i, got.level)
		}
		if want := "req-" + strings.ToLower(r.method); got.requestID != want {
			t.Errorf("line %d request id = %q, want %q", i, got.requestID, want)
		}
		for k, want := range map[string]any{"method": r.method, "route": r.wantRoute, "status": r.wantStatus, "client": "127.0.0.1"} {
			if got.attrs[k] != want {
				t.Errorf("line %d (%s %s): %s = %v (%T), want %v", i, r.method, r.path, k, got.attrs[k], got.attrs[k], want)
			}
		}
		if b, _ := got.attrs["bytes"].(int64); b <= 0 {
			t.Errorf("line %d bytes = %v, want > 0", i, got.attrs["bytes"])
		}
		if _, ok := got.attrs["duration_ms"].(float64); !ok {
			t.Errorf("line %d duration_ms = %v, want a number", i, got.attrs["duration_ms"])
		}
	}
}

// TestEveryRouteRefusesUnknownQueryParameters: the gateway knows every proto-bound route's request message
// (its route table matches the mux's patterns), so an unknown query parameter is 400 on each of them.
func TestEveryRouteRefusesUnknownQueryParameters(t *testing.T) {
	s := grpc.NewServer()
	identityv1.RegisterAuthServiceServer(s, identityv1.UnimplementedAuthServiceServer{})
	identityv1.RegisterUserServiceServer(s, identityv1.UnimplementedUserServiceServer{})
	conn := grpctest.ServeGRPC(t, s)
	g, err := gateway.New(t.Context(), gateway.Config{}, everyService(conn))
	if err != nil {
		t.Fatalf("gateway.New() = %v", err)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(openapi.Document, &doc); err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	for path, ops := range doc.Paths {
		target := param.ReplaceAllString(path, "0190b000-0000-7000-8000-000000000001") + "?zzUnknown=1"
		for method := range ops {
			req := httptest.NewRequest(strings.ToUpper(method), target, strings.NewReader("{}"))
			rec := httptest.NewRecorder()
			g.Handler().ServeHTTP(rec, req)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `unknown query parameter \"zzUnknown\"`) {
				t.Errorf("%s %s = %d %s, want 400 unknown query parameter", strings.ToUpper(method), target, rec.Code, rec.Body.Bytes())
			}
		}
	}
}
