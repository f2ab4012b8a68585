// Package osrm is a route.Provider backed by an OSRM server (Open Source Routing Machine,
// https://project-osrm.org) over its HTTP API: the route service for single trips and the table service
// for matrices.
//
// osrm-routed serves the one profile its data was prepared with and ignores the profile segment of the URL.
// To serve several modes, run one server per profile behind a proxy that routes on that segment (as the
// public demo does with driving, cycling and foot), or point the mode profiles at a single server and accept
// its speeds for every mode. Start the server with --max-table-size of at least 200 so that 100 x 100
// matrices fit; its default, 100, would answer them with TooBig.
package osrm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/route"
)

// Defaults for Options.
const (
	DefaultTimeout          = 5 * time.Second
	DefaultMaxResponseBytes = 8 << 20
)

// DefaultProfiles maps modes to OSRM profile names. Scooters and vans use the car profile: OSRM ships no
// profile of their own, and both travel on car roads. Read-only: override through Options.Profiles.
var DefaultProfiles = map[geo.TransportMode]string{
	geo.Car:     "driving",
	geo.Van:     "driving",
	geo.Scooter: "driving",
	geo.Bicycle: "cycling",
	geo.Walking: "foot",
}

// Options configures a Client. The zero value uses the defaults.
type Options struct {
	// Profiles overrides DefaultProfiles for the modes it lists. Names are URL path segments: letters,
	// digits, '-' and '_'.
	Profiles map[geo.TransportMode]string
	// HTTPClient sends the requests; nil means a new client with Timeout. A client passed here should have
	// its own timeout.
	HTTPClient *http.Client
	// Timeout bounds each request, body included, when HTTPClient is nil; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds the body read from the server; zero means DefaultMaxResponseBytes.
	MaxResponseBytes int64
}

// Client is the OSRM route.Provider. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	profiles map[geo.TransportMode]string // every valid mode; read-only after New
	http     *http.Client
	maxBytes int64
}

var _ route.Provider = (*Client)(nil)

var profileName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// New returns a Client for the OSRM server at baseURL, such as "http://osrm:5000". It fails for a URL
// that is not absolute http(s) or a profile name that is not a plain path segment.
func New(baseURL string, opts Options) (*Client, error) {
	base, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("osrm: parse base URL: %w", err)
	}
	if (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("osrm: base URL %q must be http(s)://host[:port][/path] without query or fragment", baseURL)
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	base.RawPath = ""
	c := &Client{base: base, http: opts.HTTPClient, maxBytes: opts.MaxResponseBytes}
	if c.http == nil {
		timeout := opts.Timeout
		if timeout <= 0 {
			timeout = DefaultTimeout
		}
		c.http = &http.Client{Timeout: timeout}
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultMaxResponseBytes
	}
	c.profiles = make(map[geo.TransportMode]string, len(geo.Modes))
	for _, m := range geo.Modes {
		p, ok := opts.Profiles[m]
		if !ok {
			p = DefaultProfiles[m]
		}
		if !profileName.MatchString(p) {
			return nil, fmt.Errorf("osrm: profile %q for %s is not a plain path segment", p, m)
		}
		c.profiles[m] = p
	}
	return c, nil
}

// Name returns "osrm".
func (c *Client) Name() string { return "osrm" }

// Route asks the server's route service for the fastest route. The departure time is reported back but
// does not change the answer: OSRM has no time-dependent speeds.
//
// Errors: apperr.NotFound "no route" when the server finds none; apperr.Invalid when it rejects the query
// (InvalidQuery and the other Invalid* codes, NoSegment, TooBig) or the mode is unknown; apperr.Unavailable,
// wrapping the cause, for connection errors, timeouts, 5xx and malformed or oversized answers; the
// context's error when ctx ends first.
func (c *Client) Route(ctx context.Context, from, to geo.LatLng, mode geo.TransportMode, departure time.Time) (route.Estimate, error) {
	profile, err := c.profile(mode)
	if err != nil {
		return route.Estimate{}, err
	}
	body, err := c.get(ctx, "route", c.url("route", profile, []geo.LatLng{from, to}, "overview=false"))
	if err != nil {
		return route.Estimate{}, err
	}
	dist, dur, found, err := decodeRoute(body)
	if err != nil {
		return route.Estimate{}, apperr.Wrap(apperr.Unavailable, fmt.Errorf("osrm route: decode: %w", err), "routing server unavailable")
	}
	if !found {
		return route.Estimate{}, apperr.Errorf(apperr.NotFound, "no route")
	}
	return route.Estimate{DistanceMeters: dist, Duration: dur, Provider: c.Name(), Mode: mode, Departure: departure}, nil
}

// Matrix asks the server's table service for durations and distances from every origin to every
// destination. Pairs the server cannot connect come back with Found false.
//
// Errors: as for Route, except that the server's NoRoute marks every element not found instead of failing.
func (c *Client) Matrix(ctx context.Context, origins, destinations []geo.LatLng, mode geo.TransportMode, departure time.Time) (route.Matrix, error) {
	profile, err := c.profile(mode)
	if err != nil {
		return route.Matrix{}, err
	}
	n, m := len(origins), len(destinations)
	points := make([]geo.LatLng, 0, n+m)
	points = append(append(points, origins...), destinations...)
	query := "sources=" + indexes(0, n) + "&destinations=" + indexes(n, m) + "&annotations=duration,distance"
	body, err := c.get(ctx, "table", c.url("table", profile, points, query))
	var elems []route.MatrixElement
	switch {
	case apperr.CodeOf(err) == apperr.NotFound:
		elems = notFound(n, m)
	case err != nil:
		return route.Matrix{}, err
	default:
		if elems, err = decodeTable(body, n, m); err != nil {
			return route.Matrix{}, apperr.Wrap(apperr.Unavailable, fmt.Errorf("osrm table: decode: %w", err), "routing server unavailable")
		}
	}
	return route.Matrix{Elements: elems, Provider: c.Name(), Departure: departure}, nil
}

func (c *Client) profile(mode geo.TransportMode) (string, error) {
	profile, ok := c.profiles[mode]
	if !ok {
		return "", apperr.InvalidFields("unsupported transport mode",
			apperr.FieldViolation{Field: "transport_mode", Description: fmt.Sprintf("mode %q is not supported", mode)})
	}
	return profile, nil
}

// url returns base/{service}/v1/{profile}/{lng},{lat};{lng},{lat}...?{query}. OSRM takes longitude first.
func (c *Client) url(service, profile string, points []geo.LatLng, query string) string {
	var b strings.Builder
	for i, p := range points {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(strconv.FormatFloat(p.Lng, 'f', -1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(p.Lat, 'f', -1, 64))
	}
	u := *c.base
	u.Path = c.base.Path + "/" + service + "/v1/" + profile + "/" + b.String()
	// OSRM expects ';' and ',' literally in the query; url.Values would percent-encode them.
	u.RawQuery = query
	return u.String()
}

// get sends a GET and returns the body of an answer whose code is "Ok", or a domain error.
func (c *Client) get(ctx context.Context, op, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, apperr.Wrap(apperr.Internal, fmt.Errorf("osrm %s: build request: %w", op, err), "routing request failed")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return nil, c.transportError(ctx, op, err)
	}
	if int64(len(body)) > c.maxBytes {
		return nil, unavailable(fmt.Errorf("osrm %s: response exceeds %d bytes", op, c.maxBytes))
	}
	if resp.StatusCode >= 500 {
		return nil, unavailable(fmt.Errorf("osrm %s: HTTP %d", op, resp.StatusCode))
	}
	var head struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &head); err != nil || head.Code == "" {
		// A 4xx without an OSRM body comes from something in between (a proxy's 404 or 429), not from a
		// judgement on our query.
		return nil, unavailable(fmt.Errorf("osrm %s: HTTP %d without an OSRM code (decode: %v)", op, resp.StatusCode, err))
	}
	cause := fmt.Errorf("osrm %s: HTTP %d: %s: %s", op, resp.StatusCode, head.Code, head.Message)
	switch {
	case head.Code == "Ok" && resp.StatusCode/100 == 2:
		return body, nil
	case head.Code == "NoRoute":
		return nil, apperr.Wrap(apperr.NotFound, cause, "no route")
	case head.Code == "NoSegment":
		return nil, apperr.Wrap(apperr.Invalid, cause, "a point is too far from any road the routing server knows")
	case head.Code == "TooBig":
		return nil, apperr.Wrap(apperr.Invalid, cause, "request too large for the routing server")
	case strings.HasPrefix(head.Code, "Invalid"):
		return nil, apperr.Wrap(apperr.Invalid, cause, "routing server rejected the request")
	}
	return nil, unavailable(cause)
}

// transportError classifies a failed exchange: the caller's own cancellation or deadline passes through so
// that it surfaces as such; anything else, the client's timeout included, is the server being unavailable.
func (c *Client) transportError(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("osrm %s: %w", op, ctxErr)
	}
	return unavailable(fmt.Errorf("osrm %s: %w", op, err))
}

func unavailable(cause error) error {
	return apperr.Wrap(apperr.Unavailable, cause, "routing server unavailable")
}

// indexes returns "from;from+1;...;from+n-1".
func indexes(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(strconv.Itoa(from + i))
	}
	return b.String()
}

func notFound(n, m int) []route.MatrixElement {
	elems := make([]route.MatrixElement, 0, n*m)
	for i := range n {
		for j := range m {
			elems = append(elems, route.MatrixElement{OriginIndex: i, DestinationIndex: j})
		}
	}
	return elems
}
