package route

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
)

// Default limits of a Service, matching the route.v1 contract.
const (
	DefaultMaxOrigins      = 100
	DefaultMaxDestinations = 100
	DefaultMaxElements     = 2500
	// DefaultCacheSize is the suggested Options.CacheSize. It is not applied to a zero CacheSize, which
	// disables the cache: caching is opt-in.
	DefaultCacheSize = 10_000
)

// Options configures a Service. The zero value is usable: contract limits, no cache, the wall clock.
type Options struct {
	// MaxOrigins bounds the origins of a matrix; zero means DefaultMaxOrigins.
	MaxOrigins int
	// MaxDestinations bounds the destinations of a matrix; zero means DefaultMaxDestinations.
	MaxDestinations int
	// MaxElements bounds origins x destinations; zero means DefaultMaxElements.
	MaxElements int
	// CacheSize is the number of single-pair estimates kept in an LRU cache; zero (or negative) disables it.
	CacheSize int
	// CacheTTL bounds how long a cached estimate is served; zero means entries expire only by eviction.
	// Set it when the provider's data changes (an OSRM server reloading a new extract).
	CacheTTL time.Duration
	// Now is the clock used for default departure times and cache expiry; nil means time.Now.
	Now func() time.Time
	// Registerer, when set, receives the cache counters lastmile_route_cache_hits_total and
	// lastmile_route_cache_misses_total.
	Registerer prometheus.Registerer
}

// EstimateRequest asks for one trip.
type EstimateRequest struct {
	// Origin is where the trip starts.
	Origin geo.LatLng
	// Destination is where the trip ends.
	Destination geo.LatLng
	// Mode is how the courier travels; required.
	Mode geo.TransportMode
	// Departure drives the congestion profile; the zero time means now.
	Departure time.Time
}

// MatrixRequest asks for the trips from every origin to every destination.
type MatrixRequest struct {
	// Origins are the start points, 1 to Options.MaxOrigins.
	Origins []geo.LatLng
	// Destinations are the end points, 1 to Options.MaxDestinations.
	Destinations []geo.LatLng
	// Mode is how the courier travels; required.
	Mode geo.TransportMode
	// Departure drives the congestion profile; the zero time means now.
	Departure time.Time
}

// Service answers route requests with a Provider. It is safe for concurrent use.
//
// Single-pair estimates are cached when Options.CacheSize is positive. Matrices bypass the cache on
// purpose: dispatch builds them from live courier positions, so the same matrix rarely repeats; a partial
// hit would still cost a provider round trip; and a few 100x100 matrices would evict every single-pair
// entry.
type Service struct {
	provider     Provider
	maxOrigins   int
	maxDests     int
	maxElements  int
	now          func() time.Time
	cache        *lru.Cache[cacheKey, cacheEntry] // nil when caching is off
	ttl          time.Duration
	hits, misses prometheus.Counter
}

// NewService returns a Service that asks p for estimates. It panics if opts.Registerer rejects the cache
// counters for any reason other than their earlier registration by another Service, as
// prometheus.MustRegister does.
func NewService(p Provider, opts Options) *Service {
	s := &Service{
		provider:    p,
		maxOrigins:  orDefault(opts.MaxOrigins, DefaultMaxOrigins),
		maxDests:    orDefault(opts.MaxDestinations, DefaultMaxDestinations),
		maxElements: orDefault(opts.MaxElements, DefaultMaxElements),
		now:         opts.Now,
		ttl:         opts.CacheTTL,
		hits: counter(opts.Registerer, "lastmile_route_cache_hits_total",
			"Route estimates answered from the cache."),
		misses: counter(opts.Registerer, "lastmile_route_cache_misses_total",
			"Route estimates not in the cache, asked of the provider."),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.CacheSize > 0 {
		// lru.New fails only for a non-positive size, excluded above.
		s.cache, _ = lru.New[cacheKey, cacheEntry](opts.CacheSize)
	}
	return s
}

// ProviderName returns the name of the Service's provider.
func (s *Service) ProviderName() string { return s.provider.Name() }

// EstimateRoute returns the distance and duration of one trip.
//
// Errors: apperr.Invalid with field violations ("origin.latitude", "transport_mode", ...) for a bad
// request; otherwise the provider's errors (see Provider.Route).
func (s *Service) EstimateRoute(ctx context.Context, req EstimateRequest) (Estimate, error) {
	var v violations
	v.point("origin", req.Origin)
	v.point("destination", req.Destination)
	v.mode(req.Mode)
	if err := v.err("invalid route request"); err != nil {
		return Estimate{}, err
	}
	departure := req.Departure
	if departure.IsZero() {
		departure = s.now()
	}
	key := s.cacheKey(req.Origin, req.Destination, req.Mode, departure)
	if est, ok := s.lookup(key); ok {
		est.Departure = departure
		return est, nil
	}
	est, err := s.provider.Route(ctx, req.Origin, req.Destination, req.Mode, departure)
	if err != nil {
		return Estimate{}, fmt.Errorf("route with %s: %w", s.provider.Name(), err)
	}
	s.store(key, est)
	return est, nil
}

// ComputeMatrix returns the trips from every origin to every destination, in row-major order.
//
// Errors: apperr.Invalid with field violations ("origins[3].longitude", "destinations", ...) for a bad
// request or one over the limits; apperr.Internal if the provider returns the wrong number of elements;
// otherwise the provider's errors (see Provider.Matrix).
func (s *Service) ComputeMatrix(ctx context.Context, req MatrixRequest) (Matrix, error) {
	if err := s.validateMatrix(req); err != nil {
		return Matrix{}, err
	}
	departure := req.Departure
	if departure.IsZero() {
		departure = s.now()
	}
	m, err := s.provider.Matrix(ctx, req.Origins, req.Destinations, req.Mode, departure)
	if err != nil {
		return Matrix{}, fmt.Errorf("matrix with %s: %w", s.provider.Name(), err)
	}
	if want := len(req.Origins) * len(req.Destinations); len(m.Elements) != want {
		return Matrix{}, apperr.Wrap(apperr.Internal,
			fmt.Errorf("provider %s returned %d matrix elements, want %d", s.provider.Name(), len(m.Elements), want),
			"matrix computation failed")
	}
	return m, nil
}

func (s *Service) validateMatrix(req MatrixRequest) error {
	var v violations
	v.count("origins", len(req.Origins), s.maxOrigins)
	v.count("destinations", len(req.Destinations), s.maxDests)
	if n := len(req.Origins) * len(req.Destinations); n > s.maxElements {
		// The limit spans two fields; it is reported on the first, as a client fixes it by sending fewer
		// origins per call (protovalidate reports its CEL rule without a field path).
		v.add("origins", fmt.Sprintf("origins x destinations must not exceed %d elements, got %d x %d = %d",
			s.maxElements, len(req.Origins), len(req.Destinations), n))
	}
	for i, p := range req.Origins {
		v.point(fmt.Sprintf("origins[%d]", i), p)
	}
	for i, p := range req.Destinations {
		v.point(fmt.Sprintf("destinations[%d]", i), p)
	}
	v.mode(req.Mode)
	return v.err("invalid matrix request")
}

// maxViolations bounds the violations reported for one request, so that a request with thousands of bad
// points cannot produce an equally large error.
const maxViolations = 20

// violations collects field violations for an apperr.InvalidFields error.
type violations struct {
	list    []apperr.FieldViolation
	dropped int
}

func (v *violations) add(field, description string) {
	if len(v.list) >= maxViolations {
		v.dropped++
		return
	}
	v.list = append(v.list, apperr.FieldViolation{Field: field, Description: description})
}

func (v *violations) point(field string, p geo.LatLng) {
	if !geo.ValidLat(p.Lat) {
		v.add(field+".latitude", "must be a finite number from -90 to 90")
	}
	if !geo.ValidLng(p.Lng) {
		v.add(field+".longitude", "must be a finite number from -180 to 180")
	}
}

func (v *violations) mode(m geo.TransportMode) {
	if !m.Valid() {
		v.add("transport_mode", "must be one of bicycle, scooter, car, van, walking")
	}
}

func (v *violations) count(field string, n, limit int) {
	switch {
	case n == 0:
		v.add(field, "must not be empty")
	case n > limit:
		v.add(field, fmt.Sprintf("must have at most %d items, got %d", limit, n))
	}
}

func (v *violations) err(message string) error {
	if len(v.list) == 0 {
		return nil
	}
	if v.dropped > 0 {
		message = fmt.Sprintf("%s (%d more violations not listed)", message, v.dropped)
	}
	return apperr.InvalidFields(message, v.list...)
}

// cacheKey identifies an estimate in the cache. Points are rounded to 1e-5 degrees (about 1.1 m), below
// GPS precision, so that fixes of the same spot share an entry. Departures share an entry per hour, the
// resolution of a congestion profile; the hour is UTC, so in a zone with a non-whole-hour offset an entry
// may carry the neighbouring hour's congestion, an error well inside the model's own.
type cacheKey struct {
	provider         string
	mode             geo.TransportMode
	hour             int64
	fromLat, fromLng int32
	toLat, toLng     int32
}

type cacheEntry struct {
	estimate Estimate
	expires  time.Time // zero: no expiry
}

func (s *Service) cacheKey(from, to geo.LatLng, mode geo.TransportMode, departure time.Time) cacheKey {
	return cacheKey{
		provider: s.provider.Name(),
		mode:     mode,
		hour:     departure.Truncate(time.Hour).Unix(),
		fromLat:  e5(from.Lat),
		fromLng:  e5(from.Lng),
		toLat:    e5(to.Lat),
		toLng:    e5(to.Lng),
	}
}

// e5 rounds a validated coordinate to 1e-5 degrees; ±180 degrees is 1.8e7, well within int32.
func e5(deg float64) int32 { return int32(math.Round(deg * 1e5)) }

func (s *Service) lookup(k cacheKey) (Estimate, bool) {
	if s.cache == nil {
		return Estimate{}, false
	}
	e, ok := s.cache.Get(k)
	if ok && !e.expires.IsZero() && !s.now().Before(e.expires) {
		s.cache.Remove(k)
		ok = false
	}
	if !ok {
		s.misses.Inc()
		return Estimate{}, false
	}
	s.hits.Inc()
	return e.estimate, true
}

func (s *Service) store(k cacheKey, est Estimate) {
	if s.cache == nil {
		return
	}
	e := cacheEntry{estimate: est}
	if s.ttl > 0 {
		e.expires = s.now().Add(s.ttl)
	}
	s.cache.Add(k, e)
}

func counter(reg prometheus.Registerer, name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(prometheus.Counter); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("register %s: %v", name, err))
	}
	return c
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}
