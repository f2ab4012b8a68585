package courier

import "lastmile/internal/geo"

// EarthRadiusMeters is geo.EarthRadiusMeters, the radius of the spherical Earth that distances and the
// nearby index's cells are measured on.
const EarthRadiusMeters = geo.EarthRadiusMeters

// Distance returns the great-circle distance in meters between two points given in degrees (geo.Distance).
func Distance(lat1, lng1, lat2, lng2 float64) float64 {
	return geo.Distance(geo.LatLng{Lat: lat1, Lng: lng1}, geo.LatLng{Lat: lat2, Lng: lng2})
}

func rad(deg float64) float64 { return geo.Radians(deg) }

func deg(rad float64) float64 { return geo.Degrees(rad) }

// validLatLng reports whether lat and lng are finite degrees within range.
func validLatLng(lat, lng float64) bool { return geo.LatLng{Lat: lat, Lng: lng}.Valid() }

// Box is a rectangle on the map (geo.Box); a box whose West is greater than its East crosses the
// antimeridian.
type Box = geo.Box
