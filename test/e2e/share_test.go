package e2e_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestShareLinkOverREST follows a task through a share link as a browser would, through the real binary's
// gateway: the customer creates a link; anyone holding it reads the task without credentials, in the share
// view; the link opens that task only, only GetTask, and only until it expires on the services' clock.
func TestShareLinkOverREST(t *testing.T) {
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	s := startClock(t, t.TempDir(), map[string]string{
		"LASTMILE_ADMIN_EMAIL":    adminEmail,
		"LASTMILE_ADMIN_PASSWORD": adminPassword,
	}, now)
	admin := s.login(t, adminEmail, adminPassword)
	s.createUser(t, "", "carla@example.com", "carla's long password", "")
	carla := s.login(t, "carla@example.com", "carla's long password")
	s.createUser(t, "", "dora@example.com", "dora's long password", "")
	dora := s.login(t, "dora@example.com", "dora's long password")
	_, rider := registerCourier(t, s, admin.access, "rider@example.com")
	task := createTaskREST(t, s, carla.access, "share-1")
	otherTask := createTaskREST(t, s, carla.access, "share-2")
	id := task.GetId()

	code, _, link := s.rest(t, http.MethodPost, "/v1/tasks/"+id+":share", carla.access, `{"ttl": "120s"}`)
	token := str(link, "token")
	if code != http.StatusOK || len(token) != 82 || str(link, "taskId") != id || str(link, "path") != "/track/"+id+"#shareToken="+token {
		t.Fatalf("POST /v1/tasks/{id}:share as the customer = %d %v, want 200 with an 82-character token and the tracking path", code, link)
	}
	expire, err := time.Parse(time.RFC3339, str(link, "expireTime"))
	if want := now().Add(120 * time.Second); err != nil || expire.Before(want.Add(-5*time.Second)) || expire.After(want) {
		t.Errorf("expireTime = %q (%v), want about %v", str(link, "expireTime"), err, want)
	}
	for _, c := range []struct {
		name, token, body string
		want              int
	}{
		{"an admin", admin.access, `{}`, http.StatusOK},
		{"another customer", dora.access, `{}`, http.StatusNotFound},
		{"a courier", rider.access, `{}`, http.StatusForbidden},
		{"an anonymous caller", "", `{}`, http.StatusUnauthorized},
		{"the customer, ttl 30s", carla.access, `{"ttl": "30s"}`, http.StatusBadRequest},
		{"the customer, ttl 8 days", carla.access, `{"ttl": "691200s"}`, http.StatusBadRequest},
	} {
		if code, _, body := s.rest(t, http.MethodPost, "/v1/tasks/"+id+":share", c.token, c.body); code != c.want {
			t.Errorf("POST /v1/tasks/{id}:share as %s = %d %v, want %d", c.name, code, body, c.want)
		}
	}

	shared := "/v1/tasks/" + id + "?shareToken=" + url.QueryEscape(token)
	for name, bearer := range map[string]string{"anonymously": "", "as another customer": dora.access} {
		code, _, got := s.rest(t, http.MethodGet, shared, bearer, "")
		if code != http.StatusOK || str(got, "id") != id || str(got, "state") != "TASK_STATE_PENDING" ||
			str(got, "pickup", "address") != "Rosenthaler Str. 40, Berlin" || str(got, "dropoff", "address") != "Greifswalder Str. 80, Berlin" {
			t.Errorf("GET /v1/tasks/{id}?shareToken %s = %d %v, want 200 with the task's state and stops", name, code, got)
		}
		for _, hidden := range []string{"customerId", "requestId", "notes", "courierId", "deliveryCode", "currentOffer", "proofs"} {
			if v, ok := got[hidden]; ok {
				t.Errorf("GET /v1/tasks/{id}?shareToken %s carries %s = %v, want it left out", name, hidden, v)
			}
		}
	}
	tampered := []byte(token)
	if tampered[40] == 'A' {
		tampered[40] = 'B'
	} else {
		tampered[40] = 'A'
	}
	for _, c := range []struct {
		name, path, token string
		want              int
	}{
		{"another task with the token", "/v1/tasks/" + otherTask.GetId() + "?shareToken=" + token, "", http.StatusNotFound},
		{"a tampered token", "/v1/tasks/" + id + "?shareToken=" + string(tampered), "", http.StatusNotFound},
		{"a token outside the alphabet", "/v1/tasks/" + id + "?shareToken=" + url.QueryEscape("a.b"), "", http.StatusBadRequest},
		{"no token, anonymously", "/v1/tasks/" + id, "", http.StatusUnauthorized},
		{"the task list, anonymously", "/v1/tasks", "", http.StatusUnauthorized},
		{"the explanation, anonymously", "/v1/tasks/" + id + "/explanation", "", http.StatusUnauthorized},
	} {
		if code, _, body := s.rest(t, http.MethodGet, c.path, c.token, ""); code != c.want {
			t.Errorf("GET %s (%s) = %d %v, want %d", strings.Split(c.path, "?")[0], c.name, code, body, c.want)
		}
	}
	if code, _, body := s.rest(t, http.MethodPost, "/v1/tasks/"+id+":cancel", "", `{"reason": "CANCEL_REASON_OTHER"}`); code != http.StatusUnauthorized {
		t.Errorf("POST /v1/tasks/{id}:cancel anonymously = %d %v, want 401", code, body)
	}

	// Two minutes later on the services' clock the link has expired.
	skew.Store(int64(121 * time.Second))
	if code, _, body := s.rest(t, http.MethodGet, shared, "", ""); code != http.StatusNotFound {
		t.Errorf("GET /v1/tasks/{id}?shareToken after the expiry = %d %v, want 404", code, body)
	}
}
