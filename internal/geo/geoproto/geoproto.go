// Package geoproto converts package geo's types to and from lastmile.geo.v1, for the gRPC adapters of
// every service: the one mapping of transport modes between the API's enum and the domain's names.
package geoproto

import (
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/geo"
	"lastmile/internal/platform/protoenum"
)

var modes = protoenum.New(map[geo.TransportMode]geov1.TransportMode{
	geo.Bicycle: geov1.TransportMode_TRANSPORT_MODE_BICYCLE,
	geo.Scooter: geov1.TransportMode_TRANSPORT_MODE_SCOOTER,
	geo.Car:     geov1.TransportMode_TRANSPORT_MODE_CAR,
	geo.Van:     geov1.TransportMode_TRANSPORT_MODE_VAN,
	geo.Walking: geov1.TransportMode_TRANSPORT_MODE_WALKING,
})

// Mode returns the domain mode of m: geo.ModeUnspecified for TRANSPORT_MODE_UNSPECIFIED, and for a value
// the enum does not define a mode that is not Valid ("undefined(42)"), so that the domain, which decides
// whether "unspecified" means "any" or "missing", always rejects an unknown one.
func Mode(m geov1.TransportMode) geo.TransportMode {
	return modes.Decode(m)
}

// ModeProto returns the API enum value of m, TRANSPORT_MODE_UNSPECIFIED for a mode that is not Valid.
func ModeProto(m geo.TransportMode) geov1.TransportMode {
	return modes.Encode(m)
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

// Prevalid reports whether p is present and within lastmile.geo.v1.LatLng's rules (latitude in
// [-90, 90], longitude in [-180, 180], both finite): a check for grpcserver.Prevalidator implementations.
func Prevalid(p *geov1.LatLng) bool {
	return p != nil && geo.LatLng{Lat: p.GetLatitude(), Lng: p.GetLongitude()}.Valid()
}

// PrevalidMode reports whether m is a mode the enum defines other than TRANSPORT_MODE_UNSPECIFIED
// (`enum = {defined_only: true, not_in: [0]}`).
func PrevalidMode(m geov1.TransportMode) bool {
	return m >= geov1.TransportMode_TRANSPORT_MODE_BICYCLE && m <= geov1.TransportMode_TRANSPORT_MODE_WALKING
}
