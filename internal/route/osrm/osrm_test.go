package osrm_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/route"
	"lastmile/internal/route/osrm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	paris  = geo.LatLng{Lat: 48.8566, Lng: 2.3522}
	london = geo.LatLng{Lat: 51.5074, Lng: -0.1278}
	berlin = geo.LatLng{Lat: 52.52, Lng: 13.405}
	munich = geo.LatLng{Lat: 48.1351, Lng: 11.582}
	dep    = time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)
)

// fakeOSRM answers every request with one status and body and records what it was asked.
type fakeOSRM struct {
	srv    *httptest.Server
	mu     sync.Mutex
	method string
	path   string
	query  string
	accept string
}

func newFakeOSRM(t *testing.T, status int, body string) *fakeOSRM {
	t.Helper()
	f := &fakeOSRM{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.method, f.path, f.query, f.accept = r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Accept")
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOSRM) request() (method, path, query, accept string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.method, f.path, f.query, f.accept
}

func (f *fakeOSRM) client(t *testing.T, opts osrm.Options) *osrm.Client {
	t.Helper()
	if opts.HTTPClient == nil {
		opts.HTTPClient = f.srv.Client()
	}
	c, err := osrm.New(f.srv.URL, opts)
	if err != nil {
		t.Fatalf("osrm.New(%q) = %v", f.srv.URL, err)
	}
	return c
}

func TestRoute(t *testing.T) {
	f := newFakeOSRM(t, http.StatusOK, `{"code":"Ok","routes":[{"distance":458210.5,"duration":18000.4,"geometry":"x"}],"waypoints":[]}`)
	got, err := f.client(t, osrm.Options{}).Route(t.Context(), paris, london, geo.Car, dep)
	if err != nil {
		t.Fatalf("Route = %v", err)
	}
	want := route.Estimate{DistanceMeters: 458210.5, Duration: 18000 * time.Second, Provider: "osrm", Mode: geo.Car, Departure: dep}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Route mismatch (-want +got):\n%s", diff)
	}
	method, path, query, accept := f.request()
	if method != http.MethodGet || accept != "application/json" {
		t.Errorf("request = %s with Accept %q, want GET with Accept application/json", method, accept)
	}
	if want := "/route/v1/driving/2.3522,48.8566;-0.1278,51.5074"; path != want {
		t.Errorf("path = %q, want %q", path, want)
	}
	if want := "overview=false"; query != want {
		t.Errorf("query = %q, want %q", query, want)
	}
}

func TestRouteProfiles(t *testing.T) {
	tests := []struct {
		mode     geo.TransportMode
		profiles map[geo.TransportMode]string
		want     string
	}{
		{geo.Car, nil, "driving"},
		{geo.Van, nil, "driving"},
		{geo.Scooter, nil, "driving"},
		{geo.Bicycle, nil, "cycling"},
		{geo.Walking, nil, "foot"},
		{geo.Bicycle, map[geo.TransportMode]string{geo.Bicycle: "bike"}, "bike"},
		{geo.Car, map[geo.TransportMode]string{geo.Bicycle: "bike"}, "driving"},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String()+"-"+tt.want, func(t *testing.T) {
			f := newFakeOSRM(t, http.StatusOK, `{"code":"Ok","routes":[{"distance":1,"duration":1}]}`)
			if _, err := f.client(t, osrm.Options{Profiles: tt.profiles}).Route(t.Context(), paris, london, tt.mode, dep); err != nil {
				t.Fatalf("Route = %v", err)
			}
			_, path, _, _ := f.request()
			if want := "/route/v1/" + tt.want + "/"; !strings.HasPrefix(path, want) {
				t.Errorf("path = %q, want prefix %q", path, want)
			}
		})
	}
}

func TestRouteBaseURLWithPath(t *testing.T) {
	f := newFakeOSRM(t, http.StatusOK, `{"code":"Ok","routes":[{"distance":1,"duration":1}]}`)
	c, err := osrm.New(f.srv.URL+"/osrm/", osrm.Options{HTTPClient: f.srv.Client()})
	if err != nil {
		t.Fatalf("osrm.New = %v", err)
	}
	if _, err := c.Route(t.Context(), berlin, munich, geo.Walking, dep); err != nil {
		t.Fatalf("Route = %v", err)
	}
	if _, path, _, _ := f.request(); path != "/osrm/route/v1/foot/13.405,52.52;11.582,48.1351" {
		t.Errorf("path = %q, want /osrm/route/v1/foot/13.405,52.52;11.582,48.1351", path)
	}
}

func TestRouteErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   apperr.Code
	}{
		{"NoRoute", http.StatusBadRequest, `{"code":"NoRoute","message":"Impossible route between points"}`, apperr.NotFound},
		{"Ok without routes", http.StatusOK, `{"code":"Ok","routes":[]}`, apperr.NotFound},
		{"InvalidQuery", http.StatusBadRequest, `{"code":"InvalidQuery","message":"Query string malformed close to position 9"}`, apperr.Invalid},
		{"InvalidValue", http.StatusBadRequest, `{"code":"InvalidValue","message":"Invalid coordinate value."}`, apperr.Invalid},
		{"NoSegment", http.StatusBadRequest, `{"code":"NoSegment","message":"Could not find a matching segment for any coordinate."}`, apperr.Invalid},
		{"TooBig", http.StatusBadRequest, `{"code":"TooBig","message":"Too many table coordinates"}`, apperr.Invalid},
		{"500", http.StatusInternalServerError, `internal error`, apperr.Unavailable},
		{"503 with an OSRM body", http.StatusServiceUnavailable, `{"code":"InvalidQuery"}`, apperr.Unavailable},
		{"proxy 404", http.StatusNotFound, `<html>not found</html>`, apperr.Unavailable},
		{"proxy 429", http.StatusTooManyRequests, `{"message":"Too Many Requests"}`, apperr.Unavailable},
		{"unknown code", http.StatusBadRequest, `{"code":"Weird"}`, apperr.Unavailable},
		{"Ok with a 4xx status", http.StatusBadRequest, `{"code":"Ok","routes":[{"distance":1,"duration":1}]}`, apperr.Unavailable},
		{"malformed JSON", http.StatusOK, `{"code":"Ok","routes":[{`, apperr.Unavailable},
		{"negative duration", http.StatusOK, `{"code":"Ok","routes":[{"distance":1,"duration":-5}]}`, apperr.Unavailable},
		{"negative distance", http.StatusOK, `{"code":"Ok","routes":[{"distance":-1,"duration":5}]}`, apperr.Unavailable},
		{"absurd duration", http.StatusOK, `{"code":"Ok","routes":[{"distance":1,"duration":1e300}]}`, apperr.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOSRM(t, tt.status, tt.body)
			_, err := f.client(t, osrm.Options{}).Route(t.Context(), paris, london, geo.Car, dep)
			if got := apperr.CodeOf(err); got != tt.want {
				t.Errorf("Route error code = %q, want %q (err %v)", got, tt.want, err)
			}
			if tt.want == apperr.Unavailable && apperr.As(err).Err == nil {
				t.Errorf("Route error %v wraps no cause, want the cause kept for logs", err)
			}
		})
	}
}

func TestRouteNoRouteMessage(t *testing.T) {
	f := newFakeOSRM(t, http.StatusBadRequest, `{"code":"NoRoute","message":"Impossible route between points"}`)
	_, err := f.client(t, osrm.Options{}).Route(t.Context(), paris, london, geo.Car, dep)
	if got, want := apperr.MessageOf(err), "no route"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
}

func TestRouteResponseTooLarge(t *testing.T) {
	body := `{"code":"Ok","routes":[{"distance":1,"duration":1}],"padding":"` + strings.Repeat("x", 200) + `"}`
	f := newFakeOSRM(t, http.StatusOK, body)
	_, err := f.client(t, osrm.Options{MaxResponseBytes: 100}).Route(t.Context(), paris, london, geo.Car, dep)
	if got, want := apperr.CodeOf(err), apperr.Unavailable; got != want {
		t.Errorf("Route error code = %q, want %q (err %v)", got, want, err)
	}
}

func TestRouteConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, err := osrm.New(url, osrm.Options{})
	if err != nil {
		t.Fatalf("osrm.New = %v", err)
	}
	_, err = c.Route(t.Context(), paris, london, geo.Car, dep)
	if got, want := apperr.CodeOf(err), apperr.Unavailable; got != want {
		t.Errorf("Route error code = %q, want %q (err %v)", got, want, err)
	}
}

func TestRouteClientTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // hold the answer until the client gives up
	}))
	defer srv.Close()
	c, err := osrm.New(srv.URL, osrm.Options{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("osrm.New = %v", err)
	}
	_, err = c.Route(t.Context(), paris, london, geo.Car, dep)
	if got, want := apperr.CodeOf(err), apperr.Unavailable; got != want {
		t.Errorf("Route error code = %q, want %q (err %v)", got, want, err)
	}
}

func TestRouteCallerCanceled(t *testing.T) {
	f := newFakeOSRM(t, http.StatusOK, `{"code":"Ok","routes":[{"distance":1,"duration":1}]}`)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := f.client(t, osrm.Options{}).Route(ctx, paris, london, geo.Car, dep)
	if !errors.Is(err, context.Canceled) || apperr.As(err) != nil {
		t.Errorf("Route with a canceled context = %v, want context.Canceled and no domain error", err)
	}
}

func TestRouteUnspecifiedMode(t *testing.T) {
	f := newFakeOSRM(t, http.StatusOK, `{}`)
	_, err := f.client(t, osrm.Options{}).Route(t.Context(), paris, london, geo.ModeUnspecified, dep)
	if got, want := apperr.CodeOf(err), apperr.Invalid; got != want {
		t.Errorf("Route error code = %q, want %q", got, want)
	}
	if _, path, _, _ := f.request(); path != "" {
		t.Errorf("server was asked %q, want no request", path)
	}
}

func TestMatrix(t *testing.T) {
	f := newFakeOSRM(t, http.StatusOK, `{"code":"Ok",
		"durations":[[100.4,null],[300,0]],
		"distances":[[1000.5,null],[3000,0]],
		"sources":[],"destinations":[]}`)
	got, err := f.client(t, osrm.Options{}).Matrix(t.Context(), []geo.LatLng{paris, london}, []geo.LatLng{berlin, munich}, geo.Bicycle, dep)
	if err != nil {
		t.Fatalf("Matrix = %v", err)
	}
	want := route.Matrix{
		Elements: []route.MatrixElement{
			{OriginIndex: 0, DestinationIndex: 0, Found: true, DistanceMeters: 1000.5, Duration: 100 * time.Second},
			{OriginIndex: 0, DestinationIndex: 1},
			{OriginIndex: 1, DestinationIndex: 0, Found: true, DistanceMeters: 3000, Duration: 300 * time.Second},
			{OriginIndex: 1, DestinationIndex: 1, Found: true},
		},
		Provider:  "osrm",
		Departure: dep,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Matrix mismatch (-want +got):\n%s", diff)
	}
	_, path, query, _ := f.request()
	if want := "/table/v1/cycling/2.3522,48.8566;-0.1278,51.5074;13.405,52.52;11.582,48.1351"; path != want {
		t.Errorf("path = %q, want %q", path, want)
	}
	if want := "sources=0;1&destinations=2;3&annotations=duration,distance"; query != want {
		t.Errorf("query = %q, want %q", query, want)
	}
}

func TestMatrixQueryForOneByThree(t *testing.T) {
	f := newFakeOSRM(t, http.StatusOK, `{"code":"Ok","durations":[[1,2,3]],"distances":[[1,2,3]]}`)
	if _, err := f.client(t, osrm.Options{}).Matrix(t.Context(), []geo.LatLng{paris}, []geo.LatLng{london, berlin, munich}, geo.Van, dep); err != nil {
		t.Fatalf("Matrix = %v", err)
	}
	if _, _, query, _ := f.request(); query != "sources=0&destinations=1;2;3&annotations=duration,distance" {
		t.Errorf("query = %q, want sources=0&destinations=1;2;3&annotations=duration,distance", query)
	}
}

func TestMatrixNoRouteMarksEveryElementNotFound(t *testing.T) {
	f := newFakeOSRM(t, http.StatusBadRequest, `{"code":"NoRoute","message":"Impossible route between points"}`)
	got, err := f.client(t, osrm.Options{}).Matrix(t.Context(), []geo.LatLng{paris}, []geo.LatLng{london, berlin}, geo.Car, dep)
	if err != nil {
		t.Fatalf("Matrix = %v", err)
	}
	want := []route.MatrixElement{{OriginIndex: 0, DestinationIndex: 0}, {OriginIndex: 0, DestinationIndex: 1}}
	if diff := cmp.Diff(want, got.Elements); diff != "" {
		t.Errorf("Matrix elements mismatch (-want +got):\n%s", diff)
	}
}

func TestMatrixErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   apperr.Code
	}{
		{"InvalidOptions", http.StatusBadRequest, `{"code":"InvalidOptions","message":"sources out of bounds"}`, apperr.Invalid},
		{"TooBig", http.StatusBadRequest, `{"code":"TooBig","message":"Too many table coordinates"}`, apperr.Invalid},
		{"502", http.StatusBadGateway, `bad gateway`, apperr.Unavailable},
		{"missing distances (OSRM before 5.20)", http.StatusOK, `{"code":"Ok","durations":[[1,2]]}`, apperr.Unavailable},
		{"too few rows", http.StatusOK, `{"code":"Ok","durations":[],"distances":[]}`, apperr.Unavailable},
		{"short row", http.StatusOK, `{"code":"Ok","durations":[[1]],"distances":[[1,2]]}`, apperr.Unavailable},
		{"negative distance", http.StatusOK, `{"code":"Ok","durations":[[1,2]],"distances":[[1,-2]]}`, apperr.Unavailable},
		{"string entry", http.StatusOK, `{"code":"Ok","durations":[[1,"2"]],"distances":[[1,2]]}`, apperr.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOSRM(t, tt.status, tt.body)
			_, err := f.client(t, osrm.Options{}).Matrix(t.Context(), []geo.LatLng{paris}, []geo.LatLng{london, berlin}, geo.Car, dep)
			if got := apperr.CodeOf(err); got != tt.want {
				t.Errorf("Matrix error code = %q, want %q (err %v)", got, tt.want, err)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		url  string
		opts osrm.Options
	}{
		{"no scheme", "localhost:5000", osrm.Options{}},
		{"ftp", "ftp://osrm:5000", osrm.Options{}},
		{"no host", "http://", osrm.Options{}},
		{"query", "http://osrm:5000/?x=1", osrm.Options{}},
		{"fragment", "http://osrm:5000/#x", osrm.Options{}},
		{"unparsable", "http://[::1", osrm.Options{}},
		{"profile with a slash", "http://osrm:5000", osrm.Options{Profiles: map[geo.TransportMode]string{geo.Car: "a/b"}}},
		{"empty profile", "http://osrm:5000", osrm.Options{Profiles: map[geo.TransportMode]string{geo.Walking: ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := osrm.New(tt.url, tt.opts); err == nil {
				t.Errorf("osrm.New(%q, %+v) = nil error, want an error", tt.url, tt.opts)
			}
		})
	}
}
