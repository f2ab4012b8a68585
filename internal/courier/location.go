package courier

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Fix is one GPS position as a courier app reports it, before validation.
type Fix struct {
	// Lat and Lng are WGS84 degrees; NaN marks a missing location.
	Lat, Lng float64
	// RecordedAt is when the device took the fix; zero marks a missing timestamp.
	RecordedAt time.Time
	// AccuracyMeters is the horizontal accuracy radius, 0 to 10,000; 0 means unknown.
	AccuracyMeters float64
	// Speed (m/s, 0 to 100) and Heading (degrees, [0, 360)) count only when HasSpeed and HasHeading.
	Speed, Heading       float64
	HasSpeed, HasHeading bool
}

// RejectReason says why a fix was not accepted.
type RejectReason string

// The reasons, in the order a fix is checked.
const (
	// RejectRateLimited: the courier sent fixes faster than the per-courier token bucket allows. Checked
	// first, so that bad fixes cost tokens as well.
	RejectRateLimited RejectReason = "rate_limited"
	// RejectInvalid: missing or out-of-range coordinates, missing timestamp, bad accuracy, speed or heading.
	RejectInvalid RejectReason = "invalid"
	// RejectFuture: recorded more than MaxClockSkew ahead of the server clock.
	RejectFuture RejectReason = "future"
	// RejectStale: recorded more than MaxFixAge ago.
	RejectStale RejectReason = "stale"
	// RejectOutOfOrder: not after the last accepted fix (a duplicate or a late arrival).
	RejectOutOfOrder RejectReason = "out_of_order"
	// RejectImplausibleSpeed: reaching it from the last accepted fix needs more than the mode's top speed.
	RejectImplausibleSpeed RejectReason = "implausible_speed"
)

// MaxSpeed returns the highest sustained speed in m/s that fixes of a courier travelling by m may imply.
// The limits are generous (a sprinting walker, an e-bike downhill, a car on a motorway) because a fix
// rejected wrongly costs more than a jump accepted wrongly: the next fix corrects a position, while a
// courier whose fixes are all refused disappears from dispatch.
func MaxSpeed(m Mode) float64 {
	switch m {
	case ModeWalking:
		return 4
	case ModeBicycle:
		return 15
	case ModeScooter:
		return 30
	default: // car, van
		return 60
	}
}

// Slack for GPS noise in the speed check: a fixed allowance plus the two fixes' accuracy radii, capped so
// that fixes claiming poor accuracy cannot teleport.
const (
	baseJumpSlack = 25.0
	maxJumpSlack  = 1000.0
)

// IngestResult counts the fixes of a report.
type IngestResult struct {
	Accepted int
	// Rejected counts the rejected fixes per reason; reasons that did not occur are absent.
	Rejected map[RejectReason]int
}

// RejectedCount returns the number of rejected fixes.
func (r IngestResult) RejectedCount() int {
	n := 0
	for _, c := range r.Rejected {
		n += c
	}
	return n
}

// LocationReport is one ReportLocations stream: batches of fixes from one courier, counted together.
// It is not safe for concurrent use; a stream's messages arrive in order anyway.
type LocationReport struct {
	svc       *Service
	courierID string
	result    IngestResult
}

// NewLocationReport starts a report.
func (s *Service) NewLocationReport() *LocationReport {
	return &LocationReport{svc: s, result: IngestResult{Rejected: map[RejectReason]int{}}}
}

// Add validates and ingests one batch of fixes of courier courierID, oldest first. A bad fix is counted
// and skipped, never fatal. The first batch decides the report's courier: the courier themself, or any
// service (the simulator) may report for it.
//
// Errors: Invalid for a malformed id, no fixes or more than MaxFixesPerReport, or a courier other than the
// first batch's; PermissionDenied when the caller is not that courier; NotFound when the courier does not
// exist.
func (r *LocationReport) Add(ctx context.Context, courierID string, fixes []Fix) error {
	var v violations
	id := v.id("courier_id", courierID)
	if len(fixes) == 0 || len(fixes) > MaxFixesPerReport {
		v.add("fixes", fmt.Sprintf("must hold 1 to %d fixes", MaxFixesPerReport))
	}
	if r.courierID != "" && id != r.courierID {
		v.add("courier_id", "must name the same courier in every message of a stream")
	}
	if err := v.err(); err != nil {
		return err
	}
	if r.courierID == "" {
		if err := r.svc.authorizeWrite(ctx, id); err != nil {
			return err
		}
		if err := r.svc.ensureLive(ctx, id); err != nil {
			return err
		}
		r.courierID = id
	}
	return r.svc.ingest(id, fixes, &r.result)
}

// Result returns the counts so far.
func (r *LocationReport) Result() IngestResult {
	out := IngestResult{Accepted: r.result.Accepted, Rejected: make(map[RejectReason]int, len(r.result.Rejected))}
	for k, n := range r.result.Rejected {
		out.Rejected[k] = n
	}
	return out
}

// ensureLive makes sure courier id has live state, loading it from the store when this process has not
// seen it yet (registered on another replica after this one loaded).
func (s *Service) ensureLive(ctx context.Context, id string) error {
	if s.live.has(id) {
		return nil
	}
	_, err := s.refresh(ctx, id)
	return err
}

// ingest validates fixes of courier id against its last accepted fix and the rate limit, indexes the
// accepted ones, queues the newest for the flusher and tells watchers.
func (s *Service) ingest(id string, fixes []Fix, res *IngestResult) error {
	now := s.now()
	s.live.mu.Lock()
	e := s.live.byID[id]
	if e == nil {
		s.live.mu.Unlock()
		return errNotFound
	}
	accepted := 0
	for _, f := range fixes {
		f.RecordedAt = storedTime(f.RecordedAt)
		if reason := s.check(e, f, now); reason != "" {
			res.Rejected[reason]++
			continue
		}
		e.loc = LocationFix{
			CourierID:      id,
			Lat:            f.Lat,
			Lng:            f.Lng,
			RecordedAt:     f.RecordedAt,
			AccuracyMeters: f.AccuracyMeters,
			SpeedMPS:       -1,
			Heading:        -1,
		}
		if f.HasSpeed {
			e.loc.SpeedMPS = f.Speed
		}
		if f.HasHeading {
			e.loc.Heading = f.Heading
		}
		e.hasLoc = true
		accepted++
	}
	if accepted == 0 {
		s.live.mu.Unlock()
		return nil
	}
	s.live.grid.put(e)
	snap := e.snapshot(now)
	s.live.mu.Unlock()
	res.Accepted += accepted

	s.pendingMu.Lock()
	s.pending[id] = snap.Location
	full := len(s.pending) >= s.opts.FlushBatch
	s.pendingMu.Unlock()
	if full {
		select {
		case s.flushNow <- struct{}{}:
		default:
		}
	}
	s.watch.publish([]Event{{Snapshot: snap, Changes: []Change{ChangeLocation}, At: now}})
	return nil
}

// check returns why f is rejected, or "" to accept it. It spends one rate-limit token.
func (s *Service) check(e *entry, f Fix, now time.Time) RejectReason {
	if !s.takeToken(e, now) {
		return RejectRateLimited
	}
	if !validFix(f) {
		return RejectInvalid
	}
	switch {
	case f.RecordedAt.Sub(now) > s.opts.MaxClockSkew:
		return RejectFuture
	case now.Sub(f.RecordedAt) > s.opts.MaxFixAge:
		return RejectStale
	case !e.hasLoc:
		return ""
	case !f.RecordedAt.After(e.loc.RecordedAt):
		return RejectOutOfOrder
	}
	dt := f.RecordedAt.Sub(e.loc.RecordedAt).Seconds()
	slack := baseJumpSlack + min(e.loc.AccuracyMeters+f.AccuracyMeters, maxJumpSlack)
	if Distance(e.loc.Lat, e.loc.Lng, f.Lat, f.Lng) > MaxSpeed(e.c.Mode)*dt+slack {
		return RejectImplausibleSpeed
	}
	return ""
}

func validFix(f Fix) bool {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	return validLatLng(f.Lat, f.Lng) &&
		!f.RecordedAt.IsZero() &&
		finite(f.AccuracyMeters) && f.AccuracyMeters >= 0 && f.AccuracyMeters <= 10_000 &&
		(!f.HasSpeed || finite(f.Speed) && f.Speed >= 0 && f.Speed <= 100) &&
		(!f.HasHeading || finite(f.Heading) && f.Heading >= 0 && f.Heading < 360)
}

// takeToken spends one token of e's bucket, refilled at FixesPerSecond up to FixBurst, and reports
// whether there was one.
func (s *Service) takeToken(e *entry, now time.Time) bool {
	burst := float64(s.opts.FixBurst)
	if !e.bucketOK {
		e.tokens, e.tokensAt, e.bucketOK = burst, now, true
	}
	if el := now.Sub(e.tokensAt).Seconds(); el > 0 {
		e.tokens = min(burst, e.tokens+el*s.opts.FixesPerSecond)
		e.tokensAt = now
	}
	if e.tokens < 1 {
		return false
	}
	e.tokens--
	return true
}

// NearbyQuery searches for couriers that can take a task near a point.
type NearbyQuery struct {
	Lat, Lng float64
	// RadiusMeters is more than 0 and at most MaxNearbyRadius.
	RadiusMeters float64
	// Limit is 0 (DefaultNearbyLimit) to MaxNearbyLimit.
	Limit int
	// Modes keeps couriers with one of these modes; empty keeps all.
	Modes []Mode
	// MinFreeCapacity is 0 (meaning 1) to MaxCapacity.
	MinFreeCapacity int
	// Exclude lists couriers to leave out (at most MaxNearbyExclude).
	Exclude []string
	// MaxLocationAge drops couriers whose last fix is older; 0 means DefaultMaxLocationAge, at most 1 hour.
	MaxLocationAge time.Duration
}

// Nearby search limits, from the contract.
const (
	MaxNearbyRadius       = 50_000.0
	DefaultNearbyLimit    = 10
	MaxNearbyLimit        = 100
	MaxNearbyExclude      = 100
	DefaultMaxLocationAge = 5 * time.Minute
	MaxLocationAge        = time.Hour
)

// Nearby is one courier found by FindNearbyCouriers.
type Nearby struct {
	Snapshot       Snapshot
	DistanceMeters float64
}

// FindNearbyCouriers returns available couriers (stored status available, so not busy, on break or
// offline) with at least MinFreeCapacity free, a location no older than MaxLocationAge within the radius,
// and a mode in Modes, nearest first by great-circle distance (ties by id). It answers from the live
// state. Services only.
//
// Errors: Invalid for a point, radius, limit or filter out of range; PermissionDenied for other callers.
func (s *Service) FindNearbyCouriers(ctx context.Context, q NearbyQuery) ([]Nearby, error) {
	if err := requireService(ctx); err != nil {
		return nil, err
	}
	var v violations
	if !validLatLng(q.Lat, q.Lng) {
		v.add("location", "must be a valid latitude and longitude")
	}
	if !(q.RadiusMeters > 0 && q.RadiusMeters <= MaxNearbyRadius) {
		v.add("radius_meters", "must be more than 0 and at most 50000")
	}
	if q.Limit < 0 || q.Limit > MaxNearbyLimit {
		v.add("limit", fmt.Sprintf("must be between 0 and %d", MaxNearbyLimit))
	}
	modes := map[Mode]bool{}
	for i, m := range q.Modes {
		if !m.Valid() || modes[m] {
			v.add(fmt.Sprintf("transport_modes[%d]", i), "must be a defined mode, listed once")
		}
		modes[m] = true
	}
	if q.MinFreeCapacity < 0 || q.MinFreeCapacity > MaxCapacity {
		v.add("min_free_capacity", fmt.Sprintf("must be between 0 and %d", MaxCapacity))
	}
	if len(q.Exclude) > MaxNearbyExclude {
		v.add("exclude_courier_ids", fmt.Sprintf("must list at most %d ids", MaxNearbyExclude))
	}
	exclude := make(map[string]bool, len(q.Exclude))
	for i, id := range q.Exclude {
		exclude[v.id(fmt.Sprintf("exclude_courier_ids[%d]", i), id)] = true
	}
	if q.MaxLocationAge < 0 || q.MaxLocationAge > MaxLocationAge {
		v.add("max_location_age", "must be more than 0 and at most 1 hour")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultNearbyLimit
	}
	minFree := max(q.MinFreeCapacity, 1)
	maxAge := q.MaxLocationAge
	if maxAge == 0 {
		maxAge = DefaultMaxLocationAge
	}

	now := s.now()
	oldest := now.Add(-maxAge)
	admits := func(e *entry) bool {
		return e.c.Status == StatusAvailable &&
			e.c.Capacity-e.c.ActiveTasks >= minFree &&
			(len(modes) == 0 || modes[e.c.Mode]) &&
			!e.loc.RecordedAt.Before(oldest) &&
			!exclude[e.c.ID]
	}
	s.live.mu.RLock()
	hits := s.live.grid.nearby(q.Lat, q.Lng, q.RadiusMeters, limit, admits)
	out := make([]Nearby, len(hits))
	for i, h := range hits {
		out[i] = Nearby{Snapshot: h.e.snapshot(now), DistanceMeters: h.dist}
	}
	s.live.mu.RUnlock()
	return out, nil
}
