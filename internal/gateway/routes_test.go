package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/gateway"
	"lastmile/internal/platform/grpcserver/grpctest"
)

// TestEveryDocumentedRouteIsServed: each path and method of /openapi.json reaches a service through a
// gateway in front of every service (unimplemented here, so 501), or is one of the gateway's own routes
// answering for itself, rather than ending in the gateway's 404 or 405: a service whose REST handler the gateway does not register, or a route the contract
// documents that the handlers lack, fails here.
func TestEveryDocumentedRouteIsServed(t *testing.T) {
	s := grpc.NewServer()
	identityv1.RegisterAuthServiceServer(s, identityv1.UnimplementedAuthServiceServer{})
	identityv1.RegisterUserServiceServer(s, identityv1.UnimplementedUserServiceServer{})
	courierv1.RegisterCourierServiceServer(s, courierv1.UnimplementedCourierServiceServer{})
	routev1.RegisterRouteServiceServer(s, routev1.UnimplementedRouteServiceServer{})
	dispatchv1.RegisterDispatchServiceServer(s, dispatchv1.UnimplementedDispatchServiceServer{})
	conn := grpctest.ServeGRPC(t, s)
	g, err := gateway.New(t.Context(), gateway.Config{RequestTimeout: 5 * time.Second}, everyService(conn))
	if err != nil {
		t.Fatalf("gateway.New() = %v", err)
	}
	// The served document: the generated one and the routes the gateway writes itself.
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("GET /openapi.json = %d: %v", rec.Code, err)
	}
	// The gateway's own routes that answer before calling a service: who is signed in without a session,
	// a logout without one, a refresh without the CSRF header.
	own := map[string]int{
		"GET /v1/session":          http.StatusUnauthorized,
		"DELETE /v1/session":       http.StatusNoContent,
		"POST /v1/session/refresh": http.StatusForbidden,
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	routes := 0
	for path, methods := range doc.Paths {
		target := param.ReplaceAllString(path, "0190b000-0000-7000-8000-000000000001")
		for method := range methods {
			var body *strings.Reader
			if method == "post" || method == "patch" || method == "put" {
				body = strings.NewReader("{}")
			} else {
				body = strings.NewReader("")
			}
			req := httptest.NewRequest(strings.ToUpper(method), target, body)
			if body.Len() > 0 {
				req.Header.Set("Content-Type", "application/json")
			}
			rec := httptest.NewRecorder()
			g.Handler().ServeHTTP(rec, req)
			want, ok := own[strings.ToUpper(method)+" "+path]
			if !ok {
				want = http.StatusNotImplemented
			}
			if rec.Code != want {
				t.Errorf("%s %s = %d, want %d; body %s", strings.ToUpper(method), target, rec.Code, want, rec.Body.Bytes())
			}
			routes++
		}
	}
	for _, path := range []string{"/v1/tasks", "/v1/tasks/{id}:cancel", "/v1/couriers/{courierId}/overview", "/v1/tasks/{taskId}/proofs/{uploadId}/content",
		"/v1/session", "/v1/session/refresh", "/v1/events", "/v1/tasks/{id}/events"} {
		if _, ok := doc.Paths[path]; !ok {
			t.Errorf("the document has no %s (of %d routes)", path, routes)
		}
	}
}
