// Package geoproto converts package geo's types to and from lastmile.geo.v1, for the gRPC adapters of
// every service: the one mapping of transport modes between the API's enum and the domain's names.
package geoproto

import (
	"fmt"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/geo"
)

var modes = map[geov1.TransportMode]geo.TransportMode{
	geov1.TransportMode_TRANSPORT_MODE_BICYCLE: geo.Bicycle,
	geov1.TransportMode_TRANSPORT_MODE_SCOOTER: geo.Scooter,
	geov1.TransportMode_TRANSPORT_MODE_CAR:     geo.Car,
	geov1.TransportMode_TRANSPORT_MODE_VAN:     geo.Van,
	geov1.TransportMode_TRANSPORT_MODE_WALKING: geo.Walking,
}

// Mode returns the domain mode of m: geo.ModeUnspecified for TRANSPORT_MODE_UNSPECIFIED, and for a value
// the enum does not define a mode that is not Valid ("undefined(42)"), so that the domain, which decides
// whether "unspecified" means "any" or "missing", always rejects an unknown one.
func Mode(m geov1.TransportMode) geo.TransportMode {
	if m == geov1.TransportMode_TRANSPORT_MODE_UNSPECIFIED {
		return geo.ModeUnspecified
	}
	if dm, ok := modes[m]; ok {
		return dm
	}
	return geo.TransportMode(fmt.Sprintf("undefined(%d)", m))
}

// ModeProto returns the API enum value of m, TRANSPORT_MODE_UNSPECIFIED for a mode that is not Valid.
func ModeProto(m geo.TransportMode) geov1.TransportMode {
	for pm, dm := range modes {
		if dm == m {
			return pm
		}
	}
	return geov1.TransportMode_TRANSPORT_MODE_UNSPECIFIED
}

// LatLng returns the domain point of p; a nil p is the zero point (callers that require a point check
// for nil first, to name the missing field).
func LatLng(p *geov1.LatLng) geo.LatLng {
	return geo.LatLng{Lat: p.GetLatitude(), Lng: p.GetLongitude()}
}

// LatLngProto returns the API message of p.
func LatLngProto(p geo.LatLng) *geov1.LatLng {
	return &geov1.LatLng{Latitude: p.Lat, Longitude: p.Lng}
}
