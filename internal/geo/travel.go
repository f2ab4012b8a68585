package geo

import (
	"math"
	"time"
)

// Circuity returns the ratio of road distance to great-circle distance for mode: 1.3 for cars and vans,
// 1.25 for scooters, 1.2 for bicycles (paths, contraflow lanes), 1.15 for walking (squares, passages).
// Empirical detour indexes for road travel cluster around 1.2–1.4 (Ballou, Rahardja & Sakai 2002;
// Boscoe, Henry & Zdeb 2012). An unspecified or unknown mode gets the road value, 1.3.
//
// These are the route service's geodesic provider's defaults (route/geodesic.DefaultCircuity) and the
// factors of dispatch's local fallback estimate (EstimateTravel): one table, so that a degraded decision
// ranks couriers with the numbers route itself would have used.
func Circuity(mode TransportMode) float64 {
	switch mode {
	case Scooter:
		return 1.25
	case Bicycle:
		return 1.2
	case Walking:
		return 1.15
	}
	return 1.3
}

// SpeedKMH returns the average door-to-door urban speed of mode in km/h, stops and lights included:
// walking 5, cycling 15, a scooter 25, a car 30 and a van, slower to park and to accelerate, 27. An
// unspecified or unknown mode gets the slowest, walking's 5, so that an estimate for it errs late rather
// than early. Shared with route/geodesic.DefaultSpeedKMH, as Circuity is.
func SpeedKMH(mode TransportMode) float64 {
	switch mode {
	case Bicycle:
		return 15
	case Scooter:
		return 25
	case Car:
		return 30
	case Van:
		return 27
	}
	return 5
}

// EstimateTravel returns a local estimate of the trip from a to b by mode, without map data or a route
// service: the road distance is the great-circle distance times Circuity(mode), the duration that distance
// at SpeedKMH(mode), rounded to whole seconds. It is what route's geodesic provider answers with a flat
// congestion profile, and what dispatch falls back to when route is unavailable.
func EstimateTravel(a, b LatLng, mode TransportMode) (time.Duration, float64) {
	dist := Distance(a, b) * Circuity(mode)
	seconds := dist / (SpeedKMH(mode) / 3.6)
	return time.Duration(math.Round(seconds)) * time.Second, dist
}
