package simulator

import (
	"math"
	"math/rand/v2"
)

// earthRadius is the mean Earth radius in meters, the sphere every distance here is measured on.
const earthRadius = 6_371_008.8

// Point is a position in degrees.
type Point struct {
	Lat, Lng float64
}

// distance returns the great-circle distance from a to b in meters (haversine).
func distance(a, b Point) float64 {
	φ1, φ2 := a.Lat*math.Pi/180, b.Lat*math.Pi/180
	dφ, dλ := φ2-φ1, (b.Lng-a.Lng)*math.Pi/180
	h := math.Sin(dφ/2)*math.Sin(dφ/2) + math.Cos(φ1)*math.Cos(φ2)*math.Sin(dλ/2)*math.Sin(dλ/2)
	return 2 * earthRadius * math.Asin(math.Min(1, math.Sqrt(h)))
}

// bearing returns the initial direction from a to b in degrees clockwise from north, in [0, 360).
func bearing(a, b Point) float64 {
	φ1, φ2 := a.Lat*math.Pi/180, b.Lat*math.Pi/180
	dλ := (b.Lng - a.Lng) * math.Pi / 180
	y := math.Sin(dλ) * math.Cos(φ2)
	x := math.Cos(φ1)*math.Sin(φ2) - math.Sin(φ1)*math.Cos(φ2)*math.Cos(dλ)
	θ := math.Mod(math.Atan2(y, x)*180/math.Pi+360, 360)
	if θ >= 360 { // rounding of a tiny negative angle
		θ = 0
	}
	return θ
}

// offset returns the point d meters from p in initial direction θ degrees, along a great circle.
func offset(p Point, d, θ float64) Point {
	φ1, λ1 := p.Lat*math.Pi/180, p.Lng*math.Pi/180
	δ, rad := d/earthRadius, θ*math.Pi/180
	φ2 := math.Asin(math.Sin(φ1)*math.Cos(δ) + math.Cos(φ1)*math.Sin(δ)*math.Cos(rad))
	λ2 := λ1 + math.Atan2(math.Sin(rad)*math.Sin(δ)*math.Cos(φ1), math.Cos(δ)-math.Sin(φ1)*math.Sin(φ2))
	return Point{Lat: φ2 * 180 / math.Pi, Lng: math.Mod(λ2*180/math.Pi+540, 360) - 180}
}

// lerp returns the point a fraction f of the way from a to b along the straight line.
func lerp(a, b Point, f float64) Point {
	return Point{Lat: a.Lat + (b.Lat-a.Lat)*f, Lng: a.Lng + (b.Lng-a.Lng)*f}
}

// Area is a disc on the map: where customers order and couriers start.
type Area struct {
	Center       Point
	RadiusMeters float64
}

// random returns a point uniformly distributed over the disc.
func (a Area) random(r *rand.Rand) Point {
	return offset(a.Center, a.RadiusMeters*math.Sqrt(r.Float64()), r.Float64()*360)
}

// contains reports whether p lies on the disc.
func (a Area) contains(p Point) bool { return distance(a.Center, p) <= a.RadiusMeters }
