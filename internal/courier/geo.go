package courier

import "math"

// EarthRadiusMeters is the mean Earth radius (IUGG) used for great-circle distances.
const EarthRadiusMeters = 6_371_008.8

// Distance returns the great-circle (haversine) distance in meters between two points given in degrees.
func Distance(lat1, lng1, lat2, lng2 float64) float64 {
	return EarthRadiusMeters * angle(lat1, lng1, lat2, lng2)
}

// angle returns the central angle in radians between two points given in degrees.
func angle(lat1, lng1, lat2, lng2 float64) float64 {
	p1, p2 := rad(lat1), rad(lat2)
	dp, dl := p2-p1, rad(lng2-lng1)
	h := hav(dp) + math.Cos(p1)*math.Cos(p2)*hav(dl)
	return 2 * math.Asin(math.Sqrt(min(max(h, 0), 1)))
}

func hav(x float64) float64 {
	s := math.Sin(x / 2)
	return s * s
}

func rad(deg float64) float64 { return deg * math.Pi / 180 }

func deg(rad float64) float64 { return rad * 180 / math.Pi }

// validLatLng reports whether lat and lng are finite degrees within range.
func validLatLng(lat, lng float64) bool {
	return !math.IsNaN(lat) && !math.IsNaN(lng) && lat >= -90 && lat <= 90 && lng >= -180 && lng <= 180
}

// Box is a rectangle on the map: latitudes from South to North and longitudes from West eastwards to East.
// A box whose West is greater than its East crosses the antimeridian, as in lastmile.geo.v1.BoundingBox.
type Box struct {
	South, West, North, East float64
}

// Valid reports whether the corners are in range and South is not north of North.
func (b Box) Valid() bool {
	return validLatLng(b.South, b.West) && validLatLng(b.North, b.East) && b.South <= b.North
}

// Contains reports whether the point lat, lng (degrees) is inside b, edges included.
func (b Box) Contains(lat, lng float64) bool {
	if lat < b.South || lat > b.North {
		return false
	}
	if b.West <= b.East {
		return lng >= b.West && lng <= b.East
	}
	// Crossing the antimeridian: east of West up to 180, or from -180 up to East.
	return lng >= b.West || lng <= b.East
}
