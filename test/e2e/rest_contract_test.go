package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/gen/openapi"
)

// The REST contract: every route of the OpenAPI document is tried for every status a REST client must be
// ready for — success, 400 (with camelCase field violations), 401, 403, 404, 409, 413 and 415 — with the
// exact status and the JSON error body's status and field asserted. A route that cannot answer a status
// says why in the table (notApplicable), and TestRESTContract fails when a route or a status has neither
// a row nor a reason, so a new route cannot slip in untested.

// createdStatus is what a create (POST /v1/users, /v1/couriers, /v1/tasks) answers on success.
//
// COORDINATOR: helper rest-b makes creates answer 201 with a Location header. Once that is merged, set
// this to http.StatusCreated; it is the only line that changes.
const createdStatus = http.StatusCreated

// contractMaxBody is the --max-body-bytes of the system under test: small, so that the 413 rows send 64
// KiB rather than megabytes.
const contractMaxBody = 64 << 10

// missingID is a well-formed id that names nothing.
const missingID = "0190b000-0000-7000-8000-00000000dead"

// contractStatuses are the statuses every route is checked for; 200 stands for the route's success.
var contractStatuses = []int{200, 400, 401, 403, 404, 409, 413, 415}

// contractFixture is what the rows act on: a running system with users, a courier and tasks.
type contractFixture struct {
	s                                  *system
	admin, customer, other, courier    session
	courierID, deliveredID, uploadID   string
	openTask                           *dispatchv1.Task
	spareUserID                        string
	spareCourierUser, otherCourierUser string
	logoutRefresh, refreshToken        string
	// passwordUser changes their password, which ends their sessions; no other row uses them.
	passwordUser session
}

// contractRequest is one REST request of a row.
type contractRequest struct {
	method, path, token, body string
	// contentType defaults to application/json when there is a body.
	contentType string
}

// contractRow is one cell of the table: a route and a status. Either notApplicable says why the route
// cannot answer that status, or req builds the request that makes it answer it.
type contractRow struct {
	route         string // "METHOD /path/template", as in the OpenAPI document
	status        int    // the column: 200 (success), 400, 401, 403, 404, 409, 413, 415
	notApplicable string
	req           func(f *contractFixture) contractRequest
	// want is the exact HTTP status; 0 means status (createdStatus for the success of a create).
	want int
	// code is the error body's "status" (INVALID_ARGUMENT, ...); empty for a success.
	code string
	// field, for 400 rows, is a field violation the error must carry, by its JSON name.
	field string
	// check, when set, inspects a success's body.
	check func(t *testing.T, f *contractFixture, body map[string]any)
	// awaits names the branch that adds the route, for rows written before it was merged: until the
	// document has the route, its rows are listed in the test log and not sent.
	awaits string
}

func get(path, token string) func(*contractFixture) contractRequest {
	return func(*contractFixture) contractRequest {
		return contractRequest{method: http.MethodGet, path: path, token: token}
	}
}

// Reasons shared by many rows.
const (
	naNoBody      = "the route takes no request body, so there is no content type to refuse"
	naRead        = "a read changes nothing, so nothing can conflict"
	naPublic      = "the route is public: it needs no token"
	naPublicRoles = "the route is public: there is no role to lack"
	naNoResource  = "the route names no stored resource"
	naEveryRole   = "every signed-in role may call it; another user's resource is 404, not 403, so that its existence does not leak"
	naIdempotent  = "the call is idempotent: repeating it, or racing it, gives the same result"
	naNoInput     = "the route has no input to be invalid"
)

// bigBody is a JSON body one byte over the system's limit.
func bigBody() string {
	prefix, suffix := `{"pad":"`, `"}`
	return prefix + strings.Repeat("x", contractMaxBody+1-len(prefix)-len(suffix)) + suffix
}

// tooLarge is the 413 row of a route: the gateway refuses a body over the limit before routing it, on
// every route.
func tooLarge(route, method, path string) contractRow {
	return contractRow{route: route, status: 413, code: "RESOURCE_EXHAUSTED", req: func(f *contractFixture) contractRequest {
		return contractRequest{method: method, path: f.expand(path), token: f.admin.access, body: bigBody()}
	}}
}

// notJSON is the 415 row of a route with a body.
func notJSON(route, method, path, body string) contractRow {
	return contractRow{route: route, status: 415, code: "INVALID_ARGUMENT", req: func(f *contractFixture) contractRequest {
		return contractRequest{method: method, path: f.expand(path), token: f.admin.access, body: body, contentType: "application/x-www-form-urlencoded"}
	}}
}

// unauthenticated is the 401 row of a route that needs a token: none is sent.
func unauthenticated(route, method, path, body string) contractRow {
	return contractRow{route: route, status: 401, code: "UNAUTHENTICATED", req: func(f *contractFixture) contractRequest {
		return contractRequest{method: method, path: f.expand(path), body: body}
	}}
}

func na(route string, status int, why string) contractRow {
	return contractRow{route: route, status: status, notApplicable: why}
}

// expand fills a path's placeholders with the fixture's ids.
func (f *contractFixture) expand(path string) string {
	return strings.NewReplacer(
		"{courier}", f.courierID, "{customer}", f.customer.userID, "{other}", f.other.userID,
		"{delivered}", f.deliveredID, "{upload}", f.uploadID, "{open}", f.openTask.GetId(),
	).Replace(path)
}

func contractRows() []contractRow {
	hourAhead := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Hour).Format(time.RFC3339)
	window := "startTime=" + time.Now().UTC().Truncate(time.Hour).Format(time.RFC3339) + "&endTime=" + time.Now().Add(72*time.Hour).UTC().Truncate(time.Hour).Format(time.RFC3339)
	estimate := `{"origin":{"latitude":52.52,"longitude":13.405},"destination":{"latitude":52.53,"longitude":13.43},"transportMode":"TRANSPORT_MODE_BICYCLE"}`
	matrix := `{"origins":[{"latitude":52.52,"longitude":13.405}],"destinations":[{"latitude":52.53,"longitude":13.43}],"transportMode":"TRANSPORT_MODE_CAR"}`
	task := func(requestID string) string {
		return fmt.Sprintf(`{"requestId":%q,"pickup":{"location":{"latitude":%v,"longitude":%v},"address":"Rosenthaler Str. 40"},"dropoff":{"location":{"latitude":%v,"longitude":%v},"address":"Greifswalder Str. 80"}}`,
			requestID, pickupLat, pickupLng, dropoffLat, dropoffLng)
	}
	const (
		jwks      = "GET /.well-known/jwks.json"
		login     = "POST /v1/auth:login"
		logout    = "POST /v1/auth:logout"
		refresh   = "POST /v1/auth:refresh"
		listC     = "GET /v1/couriers"
		register  = "POST /v1/couriers"
		updateC   = "PATCH /v1/couriers/{courier.id}"
		getAv     = "GET /v1/couriers/{courierId}/availability"
		setAv     = "PUT /v1/couriers/{courierId}/availability"
		checkAv   = "GET /v1/couriers/{courierId}/availability:check"
		overview  = "GET /v1/couriers/{courierId}/overview"
		statusC   = "GET /v1/couriers/{courierId}/status"
		setStatus = "POST /v1/couriers/{courierId}:setStatus"
		getC      = "GET /v1/couriers/{id}"
		matrixR   = "POST /v1/routes:computeMatrix"
		estimateR = "POST /v1/routes:estimate"
		listT     = "GET /v1/tasks"
		createT   = "POST /v1/tasks"
		getT      = "GET /v1/tasks/{id}"
		explain   = "GET /v1/tasks/{id}/explanation"
		assign    = "POST /v1/tasks/{id}:assign"
		cancel    = "POST /v1/tasks/{id}:cancel"
		proof     = "GET /v1/tasks/{taskId}/proofs/{uploadId}/content"
		listU     = "GET /v1/users"
		createU   = "POST /v1/users"
		getU      = "GET /v1/users/{id}"
		deleteU   = "DELETE /v1/users/{id}"
		password  = "POST /v1/users/{id}:changePassword"
		share     = "POST /v1/tasks/{taskId}:share"
		updateU   = "PATCH /v1/users/{user.id}"
	)
	req := func(method, path, body string, token func(*contractFixture) string) func(*contractFixture) contractRequest {
		return func(f *contractFixture) contractRequest {
			tok := ""
			if token != nil {
				tok = token(f)
			}
			return contractRequest{method: method, path: f.expand(path), token: tok, body: body}
		}
	}
	admin := func(f *contractFixture) string { return f.admin.access }
	customer := func(f *contractFixture) string { return f.customer.access }
	courier := func(f *contractFixture) string { return f.courier.access }
	other := func(f *contractFixture) string { return f.other.access }

	return []contractRow{
		// AuthService.
		{route: jwks, status: 200, req: get("/.well-known/jwks.json", ""), check: func(t *testing.T, _ *contractFixture, b map[string]any) {
			if keys, _ := b["keys"].([]any); len(keys) == 0 {
				t.Errorf("JWKS = %v, want keys", b)
			}
		}},
		na(jwks, 400, naNoInput), na(jwks, 401, naPublic), na(jwks, 403, naPublicRoles), na(jwks, 404, naNoResource),
		na(jwks, 409, naRead), tooLarge(jwks, http.MethodGet, "/.well-known/jwks.json"), na(jwks, 415, naNoBody),

		{route: login, status: 200, req: req(http.MethodPost, "/v1/auth:login", `{"email":"`+adminEmail+`","password":"`+adminPassword+`"}`, nil),
			check: func(t *testing.T, _ *contractFixture, b map[string]any) {
				if str(b, "accessToken") == "" || str(b, "refreshToken") == "" {
					t.Errorf("login = %v, want accessToken and refreshToken", b)
				}
			}},
		{route: login, status: 400, code: "INVALID_ARGUMENT", field: "password",
			req: req(http.MethodPost, "/v1/auth:login", `{"email":"`+adminEmail+`"}`, nil)},
		{route: login, status: 401, code: "UNAUTHENTICATED",
			req: req(http.MethodPost, "/v1/auth:login", `{"email":"`+adminEmail+`","password":"not the password at all"}`, nil)},
		na(login, 403, naPublicRoles),
		na(login, 404, "an unknown account is 401 like a wrong password, so that logins do not reveal which accounts exist"),
		na(login, 409, "logging in creates a new session each time; nothing can conflict"),
		tooLarge(login, http.MethodPost, "/v1/auth:login"), notJSON(login, http.MethodPost, "/v1/auth:login", "email=a&password=b"),

		{route: logout, status: 200, req: func(f *contractFixture) contractRequest {
			return contractRequest{method: http.MethodPost, path: "/v1/auth:logout", body: mustJSONString(map[string]string{"refreshToken": f.logoutRefresh})}
		}},
		{route: logout, status: 400, code: "INVALID_ARGUMENT", field: "refreshToken", req: req(http.MethodPost, "/v1/auth:logout", `{}`, nil)},
		na(logout, 401, "the refresh token in the body is the credential; an unknown or spent one ends nothing and succeeds (logout is idempotent)"),
		na(logout, 403, naPublicRoles), na(logout, 404, naIdempotent), na(logout, 409, naIdempotent),
		tooLarge(logout, http.MethodPost, "/v1/auth:logout"), notJSON(logout, http.MethodPost, "/v1/auth:logout", "refreshToken=x"),

		{route: refresh, status: 200, req: func(f *contractFixture) contractRequest {
			return contractRequest{method: http.MethodPost, path: "/v1/auth:refresh", body: mustJSONString(map[string]string{"refreshToken": f.refreshToken})}
		}, check: func(t *testing.T, _ *contractFixture, b map[string]any) {
			if str(b, "accessToken") == "" {
				t.Errorf("refresh = %v, want an accessToken", b)
			}
		}},
		{route: refresh, status: 400, code: "INVALID_ARGUMENT", field: "refreshToken", req: req(http.MethodPost, "/v1/auth:refresh", `{}`, nil)},
		{route: refresh, status: 401, code: "UNAUTHENTICATED", req: req(http.MethodPost, "/v1/auth:refresh", `{"refreshToken":"not-a-refresh-token"}`, nil)},
		na(refresh, 403, naPublicRoles),
		na(refresh, 404, "an unknown refresh token is 401: the token is the credential"),
		na(refresh, 409, "a refresh token used twice is 401 (reuse detection revokes the family), not a conflict"),
		tooLarge(refresh, http.MethodPost, "/v1/auth:refresh"), notJSON(refresh, http.MethodPost, "/v1/auth:refresh", "refreshToken=x"),

		// UserService.
		{route: createU, status: 200, want: createdStatus, req: req(http.MethodPost, "/v1/users",
			`{"email":"new.customer@example.com","password":"a long enough password","displayName":"New"}`, nil),
			check: func(t *testing.T, _ *contractFixture, b map[string]any) {
				if str(b, "role") != "ROLE_CUSTOMER" || str(b, "displayName") != "New" {
					t.Errorf("sign-up = %v, want a customer named New", b)
				}
			}},
		{route: createU, status: 400, code: "INVALID_ARGUMENT", field: "displayName",
			req: req(http.MethodPost, "/v1/users", `{"email":"x@example.com","password":"a long enough password","displayName":"a\u0001"}`, nil)},
		{route: createU, status: 401, code: "UNAUTHENTICATED", req: func(*contractFixture) contractRequest {
			return contractRequest{method: http.MethodPost, path: "/v1/users", token: "not-a-token",
				body: `{"email":"y@example.com","password":"a long enough password","displayName":"Y"}`}
		}},
		{route: createU, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodPost, "/v1/users",
			`{"email":"z@example.com","password":"a long enough password","displayName":"Z","role":"ROLE_ADMIN"}`, customer)},
		na(createU, 404, "a create names no existing resource"),
		{route: createU, status: 409, code: "ALREADY_EXISTS", req: req(http.MethodPost, "/v1/users",
			`{"email":"carla@example.com","password":"a long enough password","displayName":"Carla again"}`, nil)},
		tooLarge(createU, http.MethodPost, "/v1/users"), notJSON(createU, http.MethodPost, "/v1/users", "email=a"),

		{route: listU, status: 200, req: req(http.MethodGet, "/v1/users?pageSize=2", "", admin)},
		{route: listU, status: 400, code: "INVALID_ARGUMENT", field: "pageSize", req: req(http.MethodGet, "/v1/users?pageSize=-1", "", admin)},
		unauthenticated(listU, http.MethodGet, "/v1/users", ""),
		{route: listU, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodGet, "/v1/users", "", customer)},
		na(listU, 404, "a collection always exists; an empty one is 200"), na(listU, 409, naRead),
		tooLarge(listU, http.MethodGet, "/v1/users"), na(listU, 415, naNoBody),

		{route: getU, status: 200, req: req(http.MethodGet, "/v1/users/{customer}", "", customer), check: func(t *testing.T, f *contractFixture, b map[string]any) {
			if str(b, "id") != f.customer.userID {
				t.Errorf("GET own user = %v, want id %s", b, f.customer.userID)
			}
		}},
		{route: getU, status: 400, code: "INVALID_ARGUMENT", field: "id", req: req(http.MethodGet, "/v1/users/not-a-uuid", "", admin)},
		unauthenticated(getU, http.MethodGet, "/v1/users/{customer}", ""),
		na(getU, 403, naEveryRole),
		{route: getU, status: 404, code: "NOT_FOUND", req: req(http.MethodGet, "/v1/users/{other}", "", customer)},
		na(getU, 409, naRead), tooLarge(getU, http.MethodGet, "/v1/users/{customer}"), na(getU, 415, naNoBody),

		{route: updateU, status: 200, req: req(http.MethodPatch, "/v1/users/{customer}?updateMask=displayName", `{"displayName":"Carla C."}`, customer),
			check: func(t *testing.T, _ *contractFixture, b map[string]any) {
				if str(b, "displayName") != "Carla C." {
					t.Errorf("PATCH ?updateMask=displayName = %v, want displayName Carla C.", b)
				}
			}},
		{route: updateU, status: 400, code: "INVALID_ARGUMENT", field: "updateMask",
			req: req(http.MethodPatch, "/v1/users/{customer}?updateMask=id", `{"displayName":"Ignored"}`, customer)},
		unauthenticated(updateU, http.MethodPatch, "/v1/users/{customer}?updateMask=displayName", `{"displayName":"X"}`),
		{route: updateU, status: 403, code: "PERMISSION_DENIED",
			req: req(http.MethodPatch, "/v1/users/{customer}?updateMask=role", `{"role":"ROLE_ADMIN"}`, customer)},
		{route: updateU, status: 404, code: "NOT_FOUND",
			req: req(http.MethodPatch, "/v1/users/{other}?updateMask=displayName", `{"displayName":"Hacked"}`, customer)},
		{route: updateU, status: 409, code: "ABORTED",
			req: req(http.MethodPatch, "/v1/users/{customer}?updateMask=displayName", `{"displayName":"Stale","etag":"1"}`, customer)},
		tooLarge(updateU, http.MethodPatch, "/v1/users/{customer}"), notJSON(updateU, http.MethodPatch, "/v1/users/{customer}", "displayName=x"),

		{route: deleteU, status: 200, req: func(f *contractFixture) contractRequest {
			return contractRequest{method: http.MethodDelete, path: "/v1/users/" + f.spareUserID, token: f.admin.access}
		}, check: func(t *testing.T, _ *contractFixture, b map[string]any) {
			if str(b, "status") != "USER_STATUS_DELETED" {
				t.Errorf("DELETE user = %v, want status USER_STATUS_DELETED", b)
			}
		}},
		{route: deleteU, status: 400, code: "INVALID_ARGUMENT", field: "id", req: req(http.MethodDelete, "/v1/users/not-a-uuid", "", admin)},
		unauthenticated(deleteU, http.MethodDelete, "/v1/users/{other}", ""),
		na(deleteU, 403, naEveryRole),
		{route: deleteU, status: 404, code: "NOT_FOUND", req: req(http.MethodDelete, "/v1/users/{other}", "", customer)},
		na(deleteU, 409, naIdempotent+" (deleting a deleted user succeeds)"),
		tooLarge(deleteU, http.MethodDelete, "/v1/users/{other}"), na(deleteU, 415, naNoBody),

		{route: password, status: 200, req: func(f *contractFixture) contractRequest {
			return contractRequest{method: http.MethodPost, path: "/v1/users/" + f.passwordUser.userID + ":changePassword", token: f.passwordUser.access,
				body: `{"currentPassword":"erin's long password","newPassword":"erin's new long password"}`}
		}},
		{route: password, status: 400, code: "INVALID_ARGUMENT", field: "newPassword",
			req: req(http.MethodPost, "/v1/users/{customer}:changePassword", `{"currentPassword":"carla's long password","newPassword":"short"}`, customer)},
		unauthenticated(password, http.MethodPost, "/v1/users/{customer}:changePassword", `{"currentPassword":"a","newPassword":"a long enough password"}`),
		{route: password, status: 403, code: "PERMISSION_DENIED",
			req: req(http.MethodPost, "/v1/users/{customer}:changePassword", `{"currentPassword":"not carla's password","newPassword":"a long enough password"}`, customer)},
		{route: password, status: 404, code: "NOT_FOUND",
			req: req(http.MethodPost, "/v1/users/{other}:changePassword", `{"currentPassword":"x","newPassword":"a long enough password"}`, customer)},
		na(password, 409, "a password change needs the current password, not a version; two changes apply in turn"),
		tooLarge(password, http.MethodPost, "/v1/users/{customer}:changePassword"),
		notJSON(password, http.MethodPost, "/v1/users/{customer}:changePassword", "newPassword=x"),

		// CourierService.
		{route: register, status: 200, want: createdStatus, req: func(f *contractFixture) contractRequest {
			return contractRequest{method: http.MethodPost, path: "/v1/couriers", token: f.admin.access,
				body: fmt.Sprintf(`{"userId":%q,"transportMode":"TRANSPORT_MODE_CAR","capacity":3}`, f.spareCourierUser)}
		}, check: func(t *testing.T, _ *contractFixture, b map[string]any) {
			if str(b, "transportMode") != "TRANSPORT_MODE_CAR" {
				t.Errorf("register courier = %v, want a car courier", b)
			}
		}},
		{route: register, status: 400, code: "INVALID_ARGUMENT", field: "transportMode", req: func(f *contractFixture) contractRequest {
			return contractRequest{method: http.MethodPost, path: "/v1/couriers", token: f.admin.access,
				body: fmt.Sprintf(`{"userId":%q,"capacity":1}`, f.otherCourierUser)}
		}},
		unauthenticated(register, http.MethodPost, "/v1/couriers", `{}`),
		{route: register, status: 403, code: "PERMISSION_DENIED", req: func(f *contractFixture) contractRequest {
			return contractRequest{method: http.MethodPost, path: "/v1/couriers", token: f.customer.access,
				body: fmt.Sprintf(`{"userId":%q,"transportMode":"TRANSPORT_MODE_CAR","capacity":1}`, f.otherCourierUser)}
		}},
		{route: register, status: 404, code: "NOT_FOUND", req: req(http.MethodPost, "/v1/couriers",
			`{"userId":"`+missingID+`","transportMode":"TRANSPORT_MODE_CAR","capacity":1}`, admin)},
		{route: register, status: 409, code: "ALREADY_EXISTS", req: func(f *contractFixture) contractRequest {
			return contractRequest{method: http.MethodPost, path: "/v1/couriers", token: f.admin.access,
				body: fmt.Sprintf(`{"userId":%q,"transportMode":"TRANSPORT_MODE_CAR","capacity":1}`, f.courier.userID)}
		}},
		tooLarge(register, http.MethodPost, "/v1/couriers"), notJSON(register, http.MethodPost, "/v1/couriers", "userId=x"),

		{route: listC, status: 200, req: req(http.MethodGet, "/v1/couriers?transportMode=TRANSPORT_MODE_BICYCLE", "", admin)},
		{route: listC, status: 400, code: "INVALID_ARGUMENT", field: "pageSize", req: req(http.MethodGet, "/v1/couriers?pageSize=-1", "", admin)},
		unauthenticated(listC, http.MethodGet, "/v1/couriers", ""),
		{route: listC, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodGet, "/v1/couriers", "", customer)},
		na(listC, 404, "a collection always exists; an empty one is 200"), na(listC, 409, naRead),
		tooLarge(listC, http.MethodGet, "/v1/couriers"), na(listC, 415, naNoBody),

		{route: getC, status: 200, req: req(http.MethodGet, "/v1/couriers/{courier}", "", courier)},
		{route: getC, status: 400, code: "INVALID_ARGUMENT", field: "id", req: req(http.MethodGet, "/v1/couriers/not-a-uuid", "", admin)},
		unauthenticated(getC, http.MethodGet, "/v1/couriers/{courier}", ""),
		{route: getC, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodGet, "/v1/couriers/{courier}", "", customer)},
		{route: getC, status: 404, code: "NOT_FOUND", req: req(http.MethodGet, "/v1/couriers/"+missingID, "", admin)},
		na(getC, 409, naRead), tooLarge(getC, http.MethodGet, "/v1/couriers/{courier}"), na(getC, 415, naNoBody),

		{route: updateC, status: 200, req: req(http.MethodPatch, "/v1/couriers/{courier}?updateMask=displayName", `{"displayName":"Rider R."}`, courier),
			check: func(t *testing.T, _ *contractFixture, b map[string]any) {
				if str(b, "displayName") != "Rider R." {
					t.Errorf("PATCH courier ?updateMask=displayName = %v, want displayName Rider R.", b)
				}
			}},
		{route: updateC, status: 400, code: "INVALID_ARGUMENT", field: "updateMask",
			req: req(http.MethodPatch, "/v1/couriers/{courier}?updateMask=id", `{}`, admin)},
		unauthenticated(updateC, http.MethodPatch, "/v1/couriers/{courier}?updateMask=displayName", `{"displayName":"X"}`),
		{route: updateC, status: 403, code: "PERMISSION_DENIED",
			req: req(http.MethodPatch, "/v1/couriers/{courier}?updateMask=capacity", `{"capacity":9}`, courier)},
		{route: updateC, status: 404, code: "NOT_FOUND",
			req: req(http.MethodPatch, "/v1/couriers/"+missingID+"?updateMask=displayName", `{"displayName":"X"}`, admin)},
		{route: updateC, status: 409, code: "ABORTED",
			req: req(http.MethodPatch, "/v1/couriers/{courier}?updateMask=displayName", `{"displayName":"Stale","etag":"1"}`, admin)},
		tooLarge(updateC, http.MethodPatch, "/v1/couriers/{courier}"), notJSON(updateC, http.MethodPatch, "/v1/couriers/{courier}", "displayName=x"),

		{route: getAv, status: 200, req: req(http.MethodGet, "/v1/couriers/{courier}/availability?"+window, "", courier)},
		{route: getAv, status: 400, code: "INVALID_ARGUMENT", field: "startTime", req: req(http.MethodGet, "/v1/couriers/{courier}/availability", "", courier)},
		unauthenticated(getAv, http.MethodGet, "/v1/couriers/{courier}/availability?"+window, ""),
		{route: getAv, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodGet, "/v1/couriers/{courier}/availability?"+window, "", customer)},
		{route: getAv, status: 404, code: "NOT_FOUND", req: req(http.MethodGet, "/v1/couriers/"+missingID+"/availability?"+window, "", admin)},
		na(getAv, 409, naRead), tooLarge(getAv, http.MethodGet, "/v1/couriers/{courier}/availability"), na(getAv, 415, naNoBody),

		{route: setAv, status: 200, req: req(http.MethodPut, "/v1/couriers/{courier}/availability", `{"hours":["`+hourAhead+`"],"available":true}`, courier)},
		{route: setAv, status: 400, code: "INVALID_ARGUMENT", field: "hours[0]",
			req: req(http.MethodPut, "/v1/couriers/{courier}/availability", `{"hours":["2030-01-01T10:30:00Z"],"available":true}`, courier)},
		unauthenticated(setAv, http.MethodPut, "/v1/couriers/{courier}/availability", `{"hours":["`+hourAhead+`"]}`),
		{route: setAv, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodPut, "/v1/couriers/{courier}/availability", `{"hours":["`+hourAhead+`"]}`, customer)},
		{route: setAv, status: 404, code: "NOT_FOUND", req: req(http.MethodPut, "/v1/couriers/"+missingID+"/availability", `{"hours":["`+hourAhead+`"]}`, admin)},
		na(setAv, 409, naIdempotent+" (PUT sets the hours to the given value)"),
		tooLarge(setAv, http.MethodPut, "/v1/couriers/{courier}/availability"), notJSON(setAv, http.MethodPut, "/v1/couriers/{courier}/availability", "hours=x"),

		{route: checkAv, status: 200, req: req(http.MethodGet, "/v1/couriers/{courier}/availability:check?time="+hourAhead, "", courier)},
		{route: checkAv, status: 400, code: "INVALID_ARGUMENT", field: "time", req: req(http.MethodGet, "/v1/couriers/{courier}/availability:check?time=1990-01-01T00:00:00Z", "", courier)},
		unauthenticated(checkAv, http.MethodGet, "/v1/couriers/{courier}/availability:check?time="+hourAhead, ""),
		{route: checkAv, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodGet, "/v1/couriers/{courier}/availability:check?time="+hourAhead, "", customer)},
		{route: checkAv, status: 404, code: "NOT_FOUND", req: req(http.MethodGet, "/v1/couriers/"+missingID+"/availability:check?time="+hourAhead, "", admin)},
		na(checkAv, 409, naRead), tooLarge(checkAv, http.MethodGet, "/v1/couriers/{courier}/availability:check"), na(checkAv, 415, naNoBody),

		{route: statusC, status: 200, req: req(http.MethodGet, "/v1/couriers/{courier}/status", "", courier)},
		{route: statusC, status: 400, code: "INVALID_ARGUMENT", field: "courierId", req: req(http.MethodGet, "/v1/couriers/not-a-uuid/status", "", admin)},
		unauthenticated(statusC, http.MethodGet, "/v1/couriers/{courier}/status", ""),
		{route: statusC, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodGet, "/v1/couriers/{courier}/status", "", customer)},
		{route: statusC, status: 404, code: "NOT_FOUND", req: req(http.MethodGet, "/v1/couriers/"+missingID+"/status", "", admin)},
		na(statusC, 409, naRead), tooLarge(statusC, http.MethodGet, "/v1/couriers/{courier}/status"), na(statusC, 415, naNoBody),

		{route: setStatus, status: 200, req: req(http.MethodPost, "/v1/couriers/{courier}:setStatus", `{"status":"COURIER_STATUS_AVAILABLE"}`, courier)},
		{route: setStatus, status: 400, code: "INVALID_ARGUMENT", field: "status",
			req: req(http.MethodPost, "/v1/couriers/{courier}:setStatus", `{"status":"COURIER_STATUS_BUSY"}`, courier)},
		unauthenticated(setStatus, http.MethodPost, "/v1/couriers/{courier}:setStatus", `{"status":"COURIER_STATUS_AVAILABLE"}`),
		{route: setStatus, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodPost, "/v1/couriers/{courier}:setStatus", `{"status":"COURIER_STATUS_OFFLINE"}`, customer)},
		{route: setStatus, status: 404, code: "NOT_FOUND", req: req(http.MethodPost, "/v1/couriers/"+missingID+":setStatus", `{"status":"COURIER_STATUS_OFFLINE"}`, admin)},
		na(setStatus, 409, naIdempotent+" (setting the current status again succeeds)"),
		tooLarge(setStatus, http.MethodPost, "/v1/couriers/{courier}:setStatus"), notJSON(setStatus, http.MethodPost, "/v1/couriers/{courier}:setStatus", "status=x"),

		// RouteService: public, anonymous rate-limited.
		{route: estimateR, status: 200, req: req(http.MethodPost, "/v1/routes:estimate", estimate, nil)},
		{route: estimateR, status: 400, code: "INVALID_ARGUMENT", field: "transportMode",
			req: req(http.MethodPost, "/v1/routes:estimate", `{"origin":{"latitude":52.52,"longitude":13.405},"destination":{"latitude":52.53,"longitude":13.43}}`, nil)},
		{route: estimateR, status: 401, code: "UNAUTHENTICATED", req: req(http.MethodPost, "/v1/routes:estimate", estimate, func(*contractFixture) string { return "not-a-token" })},
		na(estimateR, 403, naPublicRoles), na(estimateR, 404, naNoResource), na(estimateR, 409, "an estimate stores nothing"),
		tooLarge(estimateR, http.MethodPost, "/v1/routes:estimate"), notJSON(estimateR, http.MethodPost, "/v1/routes:estimate", "origin=x"),

		{route: matrixR, status: 200, req: req(http.MethodPost, "/v1/routes:computeMatrix", matrix, nil)},
		{route: matrixR, status: 400, code: "INVALID_ARGUMENT", field: "origins[1].latitude", req: req(http.MethodPost, "/v1/routes:computeMatrix",
			`{"origins":[{"latitude":52.52,"longitude":13.405},{"latitude":91,"longitude":0}],"destinations":[{"latitude":52.53,"longitude":13.43}],"transportMode":"TRANSPORT_MODE_CAR"}`, nil)},
		{route: matrixR, status: 401, code: "UNAUTHENTICATED", req: req(http.MethodPost, "/v1/routes:computeMatrix", matrix, func(*contractFixture) string { return "not-a-token" })},
		na(matrixR, 403, naPublicRoles), na(matrixR, 404, naNoResource), na(matrixR, 409, "a matrix stores nothing"),
		tooLarge(matrixR, http.MethodPost, "/v1/routes:computeMatrix"), notJSON(matrixR, http.MethodPost, "/v1/routes:computeMatrix", "origins=x"),

		// DispatchService.
		{route: createT, status: 200, want: createdStatus, req: req(http.MethodPost, "/v1/tasks", task("contract-create"), customer),
			check: func(t *testing.T, _ *contractFixture, b map[string]any) {
				if str(b, "requestId") != "contract-create" || str(b, "id") == "" {
					t.Errorf("create task = %v, want requestId contract-create and an id", b)
				}
			}},
		{route: createT, status: 400, code: "INVALID_ARGUMENT", field: "pickup.location.latitude", req: req(http.MethodPost, "/v1/tasks",
			strings.Replace(task("contract-bad"), fmt.Sprintf(`"latitude":%v`, pickupLat), `"latitude":95`, 1), customer)},
		unauthenticated(createT, http.MethodPost, "/v1/tasks", task("contract-anon")),
		{route: createT, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodPost, "/v1/tasks", task("contract-courier"), courier)},
		na(createT, 404, "a create names no existing resource"),
		{route: createT, status: 409, code: "ALREADY_EXISTS", req: req(http.MethodPost, "/v1/tasks",
			strings.Replace(task("contract-open"), "Greifswalder Str. 80", "Somewhere else 1", 1), customer)},
		tooLarge(createT, http.MethodPost, "/v1/tasks"), notJSON(createT, http.MethodPost, "/v1/tasks", "requestId=x"),

		{route: listT, status: 200, req: req(http.MethodGet, "/v1/tasks?pageSize=5", "", customer)},
		{route: listT, status: 400, code: "INVALID_ARGUMENT", field: "pageSize", req: req(http.MethodGet, "/v1/tasks?pageSize=-1", "", customer)},
		unauthenticated(listT, http.MethodGet, "/v1/tasks", ""),
		{route: listT, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodGet, "/v1/tasks?customerId={other}", "", customer)},
		na(listT, 404, "a collection always exists; an empty one is 200"), na(listT, 409, naRead),
		tooLarge(listT, http.MethodGet, "/v1/tasks"), na(listT, 415, naNoBody),

		{route: getT, status: 200, req: req(http.MethodGet, "/v1/tasks/{delivered}", "", customer), check: func(t *testing.T, _ *contractFixture, b map[string]any) {
			if str(b, "state") != "TASK_STATE_DELIVERED" {
				t.Errorf("GET delivered task = %v, want TASK_STATE_DELIVERED", b)
			}
		}},
		{route: getT, status: 400, code: "INVALID_ARGUMENT", field: "id", req: req(http.MethodGet, "/v1/tasks/not-a-uuid", "", customer)},
		unauthenticated(getT, http.MethodGet, "/v1/tasks/{delivered}", ""),
		na(getT, 403, naEveryRole),
		{route: getT, status: 404, code: "NOT_FOUND", req: req(http.MethodGet, "/v1/tasks/{delivered}", "", other)},
		na(getT, 409, naRead), tooLarge(getT, http.MethodGet, "/v1/tasks/{delivered}"), na(getT, 415, naNoBody),

		{route: explain, status: 200, req: req(http.MethodGet, "/v1/tasks/{delivered}/explanation", "", admin)},
		{route: explain, status: 400, code: "INVALID_ARGUMENT", field: "id", req: req(http.MethodGet, "/v1/tasks/not-a-uuid/explanation", "", admin)},
		unauthenticated(explain, http.MethodGet, "/v1/tasks/{delivered}/explanation", ""),
		{route: explain, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodGet, "/v1/tasks/{delivered}/explanation", "", customer)},
		{route: explain, status: 404, code: "NOT_FOUND", req: req(http.MethodGet, "/v1/tasks/"+missingID+"/explanation", "", admin)},
		na(explain, 409, naRead), tooLarge(explain, http.MethodGet, "/v1/tasks/{delivered}/explanation"), na(explain, 415, naNoBody),

		{route: proof, status: 200, req: req(http.MethodGet, "/v1/tasks/{delivered}/proofs/{upload}/content", "", customer)},
		{route: proof, status: 400, code: "INVALID_ARGUMENT", field: "uploadId", req: req(http.MethodGet, "/v1/tasks/{delivered}/proofs/not-a-uuid/content", "", customer)},
		unauthenticated(proof, http.MethodGet, "/v1/tasks/{delivered}/proofs/{upload}/content", ""),
		na(proof, 403, naEveryRole),
		{route: proof, status: 404, code: "NOT_FOUND", req: req(http.MethodGet, "/v1/tasks/{delivered}/proofs/{upload}/content", "", other)},
		na(proof, 409, naRead), tooLarge(proof, http.MethodGet, "/v1/tasks/{delivered}/proofs/{upload}/content"), na(proof, 415, naNoBody),

		// CreateTaskShareLink, from helper share's branch (awaits: see contractRow.awaits).
		{route: share, status: 200, awaits: "share", req: req(http.MethodPost, "/v1/tasks/{open}:share", `{"ttl":"3600s"}`, customer),
			check: func(t *testing.T, f *contractFixture, b map[string]any) {
				if str(b, "taskId") != f.openTask.GetId() || str(b, "token") == "" || str(b, "expireTime") == "" {
					t.Errorf("share link = %v, want a token and an expiry for task %s", b, f.openTask.GetId())
				}
			}},
		{route: share, status: 400, awaits: "share", code: "INVALID_ARGUMENT", field: "ttl", req: req(http.MethodPost, "/v1/tasks/{open}:share", `{"ttl":"10s"}`, customer)},
		{route: share, status: 401, awaits: "share", code: "UNAUTHENTICATED", req: req(http.MethodPost, "/v1/tasks/{open}:share", `{}`, nil)},
		{route: share, status: 403, awaits: "share", code: "PERMISSION_DENIED", req: req(http.MethodPost, "/v1/tasks/{open}:share", `{}`, courier)},
		{route: share, status: 404, awaits: "share", code: "NOT_FOUND", req: req(http.MethodPost, "/v1/tasks/{open}:share", `{}`, other)},
		{route: share, status: 409, awaits: "share", notApplicable: "every call makes a new link and changes nothing in the task"},
		{route: share, status: 413, awaits: "share", code: "RESOURCE_EXHAUSTED", req: req(http.MethodPost, "/v1/tasks/{open}:share", bigBody(), admin)},
		{route: share, status: 415, awaits: "share", code: "INVALID_ARGUMENT", req: func(f *contractFixture) contractRequest {
			return contractRequest{method: http.MethodPost, path: f.expand("/v1/tasks/{open}:share"), token: f.admin.access, body: "ttl=60s", contentType: "application/x-www-form-urlencoded"}
		}},

		{route: assign, status: 200, req: func(f *contractFixture) contractRequest {
			return contractRequest{method: http.MethodPost, path: "/v1/tasks/" + f.openTask.GetId() + ":assign", token: f.admin.access,
				body: fmt.Sprintf(`{"courierId":%q}`, f.courierID)}
		}},
		{route: assign, status: 400, code: "INVALID_ARGUMENT", field: "courierId", req: req(http.MethodPost, "/v1/tasks/{open}:assign", `{"courierId":"nobody"}`, admin)},
		unauthenticated(assign, http.MethodPost, "/v1/tasks/{open}:assign", `{"courierId":"`+missingID+`"}`),
		{route: assign, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodPost, "/v1/tasks/{open}:assign", `{"courierId":"`+missingID+`"}`, customer)},
		{route: assign, status: 404, code: "NOT_FOUND", req: func(f *contractFixture) contractRequest {
			return contractRequest{method: http.MethodPost, path: "/v1/tasks/" + missingID + ":assign", token: f.admin.access,
				body: fmt.Sprintf(`{"courierId":%q}`, f.courierID)}
		}},
		{route: assign, status: 409, code: "ABORTED", req: func(f *contractFixture) contractRequest {
			return contractRequest{method: http.MethodPost, path: "/v1/tasks/" + f.openTask.GetId() + ":assign", token: f.admin.access,
				body: fmt.Sprintf(`{"courierId":%q,"etag":"stale-etag"}`, f.courierID)}
		}},
		tooLarge(assign, http.MethodPost, "/v1/tasks/{open}:assign"), notJSON(assign, http.MethodPost, "/v1/tasks/{open}:assign", "courierId=x"),

		{route: cancel, status: 200, req: req(http.MethodPost, "/v1/tasks/{open}:cancel", `{"reason":"CANCEL_REASON_CUSTOMER_REQUEST"}`, customer),
			check: func(t *testing.T, _ *contractFixture, b map[string]any) {
				if str(b, "state") != "TASK_STATE_CANCELLED" {
					t.Errorf("cancel = %v, want TASK_STATE_CANCELLED", b)
				}
			}},
		{route: cancel, status: 400, code: "INVALID_ARGUMENT", field: "reason", req: req(http.MethodPost, "/v1/tasks/{open}:cancel", `{}`, customer)},
		unauthenticated(cancel, http.MethodPost, "/v1/tasks/{open}:cancel", `{"reason":"CANCEL_REASON_CUSTOMER_REQUEST"}`),
		{route: cancel, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodPost, "/v1/tasks/{open}:cancel", `{"reason":"CANCEL_REASON_CUSTOMER_REQUEST"}`, courier)},
		{route: cancel, status: 404, code: "NOT_FOUND", req: req(http.MethodPost, "/v1/tasks/{open}:cancel", `{"reason":"CANCEL_REASON_CUSTOMER_REQUEST"}`, other)},
		{route: cancel, status: 409, code: "ABORTED", req: req(http.MethodPost, "/v1/tasks/{open}:cancel", `{"reason":"CANCEL_REASON_CUSTOMER_REQUEST","etag":"stale-etag"}`, customer)},
		tooLarge(cancel, http.MethodPost, "/v1/tasks/{open}:cancel"), notJSON(cancel, http.MethodPost, "/v1/tasks/{open}:cancel", "reason=x"),

		{route: overview, status: 200, req: req(http.MethodGet, "/v1/couriers/{courier}/overview", "", courier)},
		{route: overview, status: 400, code: "INVALID_ARGUMENT", field: "courierId", req: req(http.MethodGet, "/v1/couriers/not-a-uuid/overview", "", admin)},
		unauthenticated(overview, http.MethodGet, "/v1/couriers/{courier}/overview", ""),
		{route: overview, status: 403, code: "PERMISSION_DENIED", req: req(http.MethodGet, "/v1/couriers/{courier}/overview", "", customer)},
		{route: overview, status: 404, code: "NOT_FOUND", req: req(http.MethodGet, "/v1/couriers/"+missingID+"/overview", "", admin)},
		na(overview, 409, naRead), tooLarge(overview, http.MethodGet, "/v1/couriers/{courier}/overview"), na(overview, 415, naNoBody),
	}
}

func mustJSONString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// documentedRoutes lists "METHOD /path" for every operation of the OpenAPI document.
func documentedRoutes(t *testing.T) []string {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapi.Document, &doc); err != nil {
		t.Fatalf("parse the OpenAPI document: %v", err)
	}
	var routes []string
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "get", "post", "put", "patch", "delete":
				routes = append(routes, strings.ToUpper(method)+" "+path)
			}
		}
	}
	sort.Strings(routes)
	return routes
}

// routeShape names a route without its path parameters' names ("PATCH /v1/users/{}"), so that renaming a
// parameter in the document ({user.id} to {id}) does not orphan its rows.
func routeShape(route string) string {
	return pathParam.ReplaceAllString(route, "{}")
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// TestRESTContractCoversEveryRoute: the table has exactly one row, a request or a reason, for every route
// of the OpenAPI document and every status, and no row for a route the document lacks.
func TestRESTContractCoversEveryRoute(t *testing.T) {
	var routes []string
	for _, r := range documentedRoutes(t) {
		routes = append(routes, routeShape(r))
	}
	rows := map[string]int{}
	for _, r := range contractRows() {
		rows[fmt.Sprintf("%s %d", routeShape(r.route), r.status)]++
		if !slices.Contains(routes, routeShape(r.route)) && r.awaits != "" {
			t.Logf("row %s %d awaits branch %s, which adds the route", r.route, r.status, r.awaits)
			continue
		}
		if !slices.Contains(routes, routeShape(r.route)) {
			t.Errorf("row for %q: the OpenAPI document has no such route", r.route)
		}
		if (r.notApplicable == "") == (r.req == nil) {
			t.Errorf("row %s %d: want either a request or a reason it cannot occur", r.route, r.status)
		}
	}
	for _, route := range routes {
		for _, st := range contractStatuses {
			if n := rows[fmt.Sprintf("%s %d", route, st)]; n != 1 {
				t.Errorf("%s, status %d: %d rows, want exactly 1 (a request, or why the route cannot answer %d)", route, st, n, st)
			}
		}
	}
}

// newContractFixture starts the system and prepares what the rows act on: an admin, two customers, a
// courier with a session who delivered a task with a photo proof, an open task, and spare accounts for the
// rows that change or delete them.
func newContractFixture(ctx context.Context, t *testing.T) *contractFixture {
	t.Helper()
	s := startWithAdmin(t, "--max-body-bytes", fmt.Sprint(contractMaxBody))
	f := &contractFixture{s: s}
	f.admin = s.login(t, adminEmail, adminPassword)
	f.courierID, f.courier = registerCourier(t, s, f.admin.access, "rider@example.com")
	s.createUser(t, "", "carla@example.com", "carla's long password", "")
	f.customer = s.login(t, "carla@example.com", "carla's long password")
	s.createUser(t, "", "dora@example.com", "dora's long password", "")
	f.other = s.login(t, "dora@example.com", "dora's long password")
	f.spareUserID = s.createUser(t, "", "spare@example.com", "spare's long password", "")
	f.logoutRefresh = s.login(t, "spare@example.com", "spare's long password").refresh
	f.refreshToken = s.login(t, "dora@example.com", "dora's long password").refresh
	s.createUser(t, "", "erin@example.com", "erin's long password", "")
	f.passwordUser = s.login(t, "erin@example.com", "erin's long password")
	f.spareCourierUser = s.createUser(t, f.admin.access, "spare.rider@example.com", "spare rider's long password", "ROLE_COURIER")
	f.otherCourierUser = s.createUser(t, f.admin.access, "other.rider@example.com", "other rider's long password", "ROLE_COURIER")

	conn := s.grpcConn(t, "")
	dispatch := dispatchv1.NewDispatchServiceClient(conn)
	couriers := courierv1.NewCourierServiceClient(conn)
	goAvailable(ctx, t, s, couriers, f.courierID, f.courier.access, courierLat, courierLng)
	session := openSession(ctx, t, dispatch, f.courier.access, 0, 0)
	delivered := createTaskREST(t, s, f.customer.access, "contract-delivered")
	offer, cursor := session.nextOffer()
	session.ack(cursor)
	session.succeed("accept", acceptCmd(offer.GetOffer().GetId()), dispatchv1.TaskState_TASK_STATE_ASSIGNED)
	moveTo(ctx, t, couriers, f.courierID, f.courier.access, pickupLat, pickupLng, time.Now())
	session.succeed("pickup", pickupCmd(delivered.GetId()), dispatchv1.TaskState_TASK_STATE_PICKED_UP)
	up := uploadPhoto(ctx, t, dispatch, f.courier.access, delivered.GetId(), photo(t))
	session.succeed("deliver", deliverCmd(delivered.GetId(), up.GetId()), dispatchv1.TaskState_TASK_STATE_DELIVERED)
	f.deliveredID, f.uploadID = delivered.GetId(), up.GetId()
	// The courier goes offline, so that the open task stays PENDING for the assign and cancel rows. The
	// delivered task's claim on the courier is released by a job after the delivery; until then, going
	// offline is refused (FAILED_PRECONDITION), so the test asks again until the release has happened.
	for {
		code, _, body := s.rest(t, http.MethodPost, "/v1/couriers/"+f.courierID+":setStatus", f.courier.access, `{"status":"COURIER_STATUS_OFFLINE"}`)
		if code == http.StatusOK {
			break
		}
		if code != http.StatusBadRequest || errStatus(body) != "FAILED_PRECONDITION" || ctx.Err() != nil {
			t.Fatalf("setStatus OFFLINE = %d %v, want 200 once the delivered task's claim is released", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.openTask = createTaskREST(t, s, f.customer.access, "contract-open")
	return f
}

// TestRESTContract runs every row of the table against one running system, in order (some rows change
// what later rows see: the assign before the cancel, the spare accounts).
func TestRESTContract(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := newContractFixture(ctx, t)
	camel := regexp.MustCompile(`^[a-z][A-Za-z0-9]*(\[[0-9]+\])?(\.[a-z][A-Za-z0-9]*(\[[0-9]+\])?)*$`)
	var documented []string
	for _, r := range documentedRoutes(t) {
		documented = append(documented, routeShape(r))
	}
	for _, row := range contractRows() {
		if row.notApplicable != "" {
			continue
		}
		if row.awaits != "" && !slices.Contains(documented, routeShape(row.route)) {
			t.Logf("%s %d: not sent, the route comes with branch %s", row.route, row.status, row.awaits)
			continue
		}
		t.Run(fmt.Sprintf("%s/%d", row.route, row.status), func(t *testing.T) {
			r := row.req(f)
			want := row.want
			if want == 0 {
				want = row.status
			}
			code, raw := f.send(t, r)
			if code != want {
				t.Fatalf("%s %s = %d, want %d; body %s", r.method, r.path, code, want, raw)
			}
			if row.code == "" {
				if row.check != nil {
					var body map[string]any
					if err := json.Unmarshal(raw, &body); err != nil {
						t.Fatalf("%s %s: body %q is not a JSON object: %v", r.method, r.path, raw, err)
					}
					row.check(t, f, body)
				}
				return
			}
			var e struct {
				Error struct {
					Code    int    `json:"code"`
					Status  string `json:"status"`
					Message string `json:"message"`
					Details []struct {
						Type            string `json:"@type"`
						FieldViolations []struct {
							Field       string `json:"field"`
							Description string `json:"description"`
						} `json:"fieldViolations"`
					} `json:"details"`
				} `json:"error"`
			}
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Fatalf("%s %s: error body %q is not JSON: %v", r.method, r.path, raw, err)
			}
			if e.Error.Code != want || e.Error.Status != row.code || e.Error.Message == "" {
				t.Errorf("%s %s error = {code %d, status %q, message %q}, want {code %d, status %q, a message}",
					r.method, r.path, e.Error.Code, e.Error.Status, e.Error.Message, want, row.code)
			}
			var fields []string
			for _, d := range e.Error.Details {
				for _, v := range d.FieldViolations {
					fields = append(fields, v.Field)
					if !camel.MatchString(v.Field) {
						t.Errorf("%s %s: field violation %q is not a camelCase JSON path", r.method, r.path, v.Field)
					}
					if snake := protoName(v.Field); snake != v.Field && strings.Contains(v.Description, snake) {
						t.Errorf("%s %s: field violation description %q names the field by its proto name %q", r.method, r.path, v.Description, snake)
					}
				}
			}
			if row.field != "" && !slices.Contains(fields, row.field) {
				t.Errorf("%s %s: field violations %v, want one on %q; body %s", r.method, r.path, fields, row.field, raw)
			}
		})
	}
}

// send sends a row's request and returns the status and the raw body.
func (f *contractFixture) send(t *testing.T, r contractRequest) (int, []byte) {
	t.Helper()
	var body io.Reader = http.NoBody
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, "http://"+f.s.HTTP+r.path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	if r.body != "" {
		ct := r.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: read body: %v", r.method, r.path, err)
	}
	return resp.StatusCode, raw
}

// protoName is the proto spelling of a camelCase JSON path: transportMode -> transport_mode.
func protoName(jsonPath string) string {
	var b strings.Builder
	for _, c := range jsonPath {
		if 'A' <= c && c <= 'Z' {
			b.WriteByte('_')
			c += 'a' - 'A'
		}
		b.WriteRune(c)
	}
	return b.String()
}
