// Package geo is lastmile's geometry and the vocabulary every service shares about the map: points
// (LatLng), great-circle distance and bearing on a spherical Earth, bounding boxes that may cross the
// antimeridian, the transport modes couriers travel by, and a local travel estimate per mode
// (EstimateTravel: the route service's geodesic model and dispatch's fallback when route is down).
//
// It is a domain package: it imports no protobuf, gRPC or SQL. Package geoproto converts its types to
// and from lastmile.geo.v1 for the transport adapters.
package geo

import (
	"math"
)

// EarthRadiusMeters is the mean Earth radius (IUGG R1, 6,371,008.8 m), the usual choice for haversine.
const EarthRadiusMeters = 6_371_008.8

// LatLng is a WGS84 point in degrees.
type LatLng struct {
	Lat float64
	Lng float64
}

// Valid reports whether p's latitude is within [-90, 90] and its longitude within [-180, 180]; NaN is
// neither.
func (p LatLng) Valid() bool { return ValidLat(p.Lat) && ValidLng(p.Lng) }

// ValidLat reports whether lat is a latitude in degrees within [-90, 90] (not NaN).
func ValidLat(lat float64) bool { return lat >= -90 && lat <= 90 }

// ValidLng reports whether lng is a longitude in degrees within [-180, 180] (not NaN).
func ValidLng(lng float64) bool { return lng >= -180 && lng <= 180 }

// Radians converts degrees to radians.
func Radians(deg float64) float64 { return deg * math.Pi / 180 }

// Degrees converts radians to degrees.
func Degrees(rad float64) float64 { return rad * 180 / math.Pi }

// Distance returns the great-circle (haversine) distance between a and b in meters on a sphere of radius
// EarthRadiusMeters. It is accurate to about 0.5 % against the WGS84 ellipsoid, and symmetric.
func Distance(a, b LatLng) float64 {
	return EarthRadiusMeters * CentralAngle(a, b)
}

// CentralAngle returns the angle in radians between a and b seen from the centre of the Earth, in [0, π].
func CentralAngle(a, b LatLng) float64 {
	p1, p2 := Radians(a.Lat), Radians(b.Lat)
	h := hav(p2-p1) + math.Cos(p1)*math.Cos(p2)*hav(Radians(b.Lng-a.Lng))
	// Rounding can push h a hair outside [0, 1] for antipodal points, outside Asin's domain.
	return 2 * math.Asin(math.Sqrt(min(max(h, 0), 1)))
}

func hav(x float64) float64 {
	s := math.Sin(x / 2)
	return s * s
}

// Bearing returns the initial bearing of the great circle from a to b in degrees clockwise from true
// north, in [0, 360): 0 is north, 90 east. It is 0 when a and b are the same point.
func Bearing(a, b LatLng) float64 {
	p1, p2 := Radians(a.Lat), Radians(b.Lat)
	dl := Radians(b.Lng - a.Lng)
	y := math.Sin(dl) * math.Cos(p2)
	x := math.Cos(p1)*math.Sin(p2) - math.Sin(p1)*math.Cos(p2)*math.Cos(dl)
	deg := math.Mod(Degrees(math.Atan2(y, x))+360, 360)
	if deg >= 360 { // Mod of a value a hair below 360 can round back up to it.
		deg = 0
	}
	return deg
}

// Box is a rectangle on the map: latitudes from South to North and longitudes from West eastwards to East.
// A box whose West is greater than its East crosses the antimeridian, as in lastmile.geo.v1.BoundingBox.
type Box struct {
	South, West, North, East float64
}

// Valid reports whether the corners are in range and South is not north of North.
func (b Box) Valid() bool {
	return LatLng{b.South, b.West}.Valid() && LatLng{b.North, b.East}.Valid() && b.South <= b.North
}

// Contains reports whether p is inside b, edges included.
func (b Box) Contains(p LatLng) bool {
	if p.Lat < b.South || p.Lat > b.North {
		return false
	}
	if b.West <= b.East {
		return p.Lng >= b.West && p.Lng <= b.East
	}
	// Crossing the antimeridian: east of West up to 180, or from -180 up to East.
	return p.Lng >= b.West || p.Lng <= b.East
}
