package gateway_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"lastmile/gen/openapi"
	"lastmile/internal/gateway"
)

// openAPIDoc is the part of the OpenAPI document the tests read.
type openAPIDoc struct {
	SecurityDefinitions map[string]map[string]string `json:"securityDefinitions"`
	Security            []map[string][]string        `json:"security"`
	Paths               map[string]map[string]openOp `json:"paths"`
}

type openOp struct {
	OperationID string                 `json:"operationId"`
	Security    *[]map[string][]string `json:"security"`
	Parameters  []struct {
		Name string `json:"name"`
		In   string `json:"in"`
	} `json:"parameters"`
	Responses map[string]json.RawMessage `json:"responses"`
}

func served(t *testing.T) openAPIDoc {
	t.Helper()
	srv := startGateway(t, &fakeRoute{}, gateway.Config{})
	resp, body := do(t, srv, http.MethodGet, "/openapi.json", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json status = %d", resp.StatusCode)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("document: %v", err)
	}
	return doc
}

func TestOpenAPIBearerScheme(t *testing.T) {
	doc := served(t)

	if got, want := doc.SecurityDefinitions["bearer"], map[string]string{
		"type": "apiKey", "in": "header", "name": "Authorization",
		"description": "An access token from POST /v1/auth:login, sent as `Authorization: Bearer <access token>`. Operations marked as public need none.",
	}; !cmp.Equal(got, want) {
		t.Errorf("securityDefinitions.bearer = %v, want %v", got, want)
	}
	if diff := cmp.Diff([]map[string][]string{{"bearer": {}}}, doc.Security); diff != "" {
		t.Errorf("document security (-want +got):\n%s", diff)
	}
	// Public operations override the document's requirement with an empty list.
	login := doc.Paths["/v1/auth:login"]["post"]
	if login.Security == nil || len(*login.Security) != 0 {
		t.Errorf("POST /v1/auth:login security = %v, want []", login.Security)
	}
	if tasks := doc.Paths["/v1/tasks"]["post"]; tasks.Security != nil {
		t.Errorf("POST /v1/tasks security = %v, want the document's (absent)", *tasks.Security)
	}
}

func TestOpenAPIUpdateMaskDocumented(t *testing.T) {
	doc := served(t)
	for _, path := range []string{"/v1/users/{id}", "/v1/couriers/{id}"} {
		op, ok := doc.Paths[path]["patch"]
		if !ok {
			t.Errorf("no PATCH %s", path)
			continue
		}
		if !slices.ContainsFunc(op.Parameters, func(p struct {
			Name string `json:"name"`
			In   string `json:"in"`
		}) bool {
			return p.Name == "updateMask" && p.In == "query"
		}) {
			t.Errorf("PATCH %s has no updateMask query parameter: %v", path, op.Parameters)
		}
	}
}

// TestOpenAPINoIdenticalPaths: two paths that differ only in their parameters' names (/v1/users/{id} and
// /v1/users/{user.id}) are one path to a client, and OpenAPI forbids them.
func TestOpenAPINoIdenticalPaths(t *testing.T) {
	var doc openAPIDoc
	if err := json.Unmarshal(openapi.Document, &doc); err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	seen := map[string]string{}
	for path, ops := range doc.Paths {
		shape := param.ReplaceAllString(path, "{}")
		if other, ok := seen[shape]; ok {
			t.Errorf("paths %s and %s are identical", path, other)
		}
		seen[shape] = path
		for method, op := range ops {
			if _, ok := op.Responses["400"]; !ok {
				t.Errorf("%s %s documents no 400 response", method, path)
			}
		}
	}
}

// TestOpenAPIDocumentsCreated: the served document says what creates answer, 201 with a Location header,
// and keeps 200 for every other operation but the browser's logout, which answers 204 No Content.
func TestOpenAPIDocumentsCreated(t *testing.T) {
	doc := served(t)
	creates := map[string]bool{"/v1/users": true, "/v1/couriers": true, "/v1/tasks": true}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			_, has200 := op.Responses["200"]
			created, has201 := op.Responses["201"]
			if method == "post" && creates[path] {
				if has200 || !has201 {
					t.Errorf("POST %s responses %v, want 201 and no 200", path, keysOf(op.Responses))
					continue
				}
				var r struct {
					Headers map[string]map[string]string `json:"headers"`
				}
				if err := json.Unmarshal(created, &r); err != nil {
					t.Fatal(err)
				}
				if got, want := r.Headers["Location"]["description"], "The path of the new resource: "+path+"/{id}."; got != want {
					t.Errorf("POST %s 201 Location = %q, want %q", path, got, want)
				}
				continue
			}
			if method == "delete" && path == "/v1/session" {
				if got := keysOf(op.Responses); !slices.Equal(got, []string{"204", "default"}) {
					t.Errorf("DELETE /v1/session responses %v, want [204 default]", got)
				}
				continue
			}
			if !has200 || has201 {
				t.Errorf("%s %s responses %v, want 200 and no 201", method, path, keysOf(op.Responses))
			}
		}
	}
}

func keysOf(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestOpenAPIDocumentsGatewayRoutes: the routes the gateway writes itself are in the served document with
// their parameters (the watch requests' fields, read from their descriptors) and their credentials: login,
// refresh and logout take none (the cookies carry them), a task's stream and GET /v1/tasks/{id} take a
// bearer token or a share token alone.
func TestOpenAPIDocumentsGatewayRoutes(t *testing.T) {
	doc := served(t)
	params := func(method, path string) []string {
		op, ok := doc.Paths[path][method]
		if !ok {
			t.Errorf("the document has no %s %s", method, path)
			return nil
		}
		var out []string
		for _, p := range op.Parameters {
			out = append(out, p.In+":"+p.Name)
		}
		return out
	}
	if diff := cmp.Diff([]string{
		"query:states", "query:courierId", "query:customerId", "query:view", "query:changedSince",
		"query:couriers",
		"query:couriers.bounds.southWest.latitude", "query:couriers.bounds.southWest.longitude",
		"query:couriers.bounds.northEast.latitude", "query:couriers.bounds.northEast.longitude",
		"query:couriers.courierIds",
		"header:Last-Event-ID", "query:lastEventId",
	}, params("get", "/v1/events")); diff != "" {
		t.Errorf("GET /v1/events parameters (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"path:id", "query:shareToken", "header:Last-Event-ID", "query:lastEventId"},
		params("get", "/v1/tasks/{id}/events")); diff != "" {
		t.Errorf("GET /v1/tasks/{id}/events parameters (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"body:body"}, params("post", "/v1/session")); diff != "" {
		t.Errorf("POST /v1/session parameters (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"header:X-Csrf-Token"}, params("post", "/v1/session/refresh")); diff != "" {
		t.Errorf("POST /v1/session/refresh parameters (-want +got):\n%s", diff)
	}

	public := &[]map[string][]string{}
	bearerOrNone := &[]map[string][]string{{"bearer": {}}, {}}
	for _, c := range []struct {
		method, path string
		want         *[]map[string][]string // nil: the document's bearer requirement
	}{
		{"post", "/v1/session", public},
		{"get", "/v1/session", nil},
		{"delete", "/v1/session", public},
		{"post", "/v1/session/refresh", public},
		{"get", "/v1/events", nil},
		{"get", "/v1/tasks/{id}/events", bearerOrNone},
		{"get", "/v1/tasks/{id}", bearerOrNone},
	} {
		if diff := cmp.Diff(c.want, doc.Paths[c.path][c.method].Security); diff != "" {
			t.Errorf("%s %s security (-want +got):\n%s", c.method, c.path, diff)
		}
	}
}
