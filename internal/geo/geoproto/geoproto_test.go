package geoproto_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/geo"
	"lastmile/internal/geo/geoproto"
)

func TestModeRoundTrip(t *testing.T) {
	tests := []struct {
		proto  geov1.TransportMode
		domain geo.TransportMode
	}{
		{geov1.TransportMode_TRANSPORT_MODE_BICYCLE, geo.Bicycle},
		{geov1.TransportMode_TRANSPORT_MODE_SCOOTER, geo.Scooter},
		{geov1.TransportMode_TRANSPORT_MODE_CAR, geo.Car},
		{geov1.TransportMode_TRANSPORT_MODE_VAN, geo.Van},
		{geov1.TransportMode_TRANSPORT_MODE_WALKING, geo.Walking},
		{geov1.TransportMode_TRANSPORT_MODE_UNSPECIFIED, geo.ModeUnspecified},
	}
	for _, tt := range tests {
		if got := geoproto.Mode(tt.proto); got != tt.domain {
			t.Errorf("Mode(%v) = %q, want %q", tt.proto, got, tt.domain)
		}
		if got := geoproto.ModeProto(tt.domain); got != tt.proto {
			t.Errorf("ModeProto(%q) = %v, want %v", tt.domain, got, tt.proto)
		}
	}
	// Every domain mode has an enum value: a mode added to geo but not here fails.
	for _, m := range geo.Modes {
		if got := geoproto.ModeProto(m); got == geov1.TransportMode_TRANSPORT_MODE_UNSPECIFIED {
			t.Errorf("ModeProto(%q) = UNSPECIFIED, want a defined value", m)
		}
	}
}

func TestModeUndefinedIsInvalid(t *testing.T) {
	got := geoproto.Mode(42)
	if got != "undefined(42)" || got.Valid() {
		t.Errorf("Mode(42) = %q (valid %v), want the invalid mode \"undefined(42)\"", got, got.Valid())
	}
	if got := geoproto.ModeProto("undefined(42)"); got != geov1.TransportMode_TRANSPORT_MODE_UNSPECIFIED {
		t.Errorf("ModeProto(undefined(42)) = %v, want UNSPECIFIED", got)
	}
}

func TestLatLng(t *testing.T) {
	p := geo.LatLng{Lat: 52.52, Lng: 13.405}
	msg := geoproto.LatLngProto(p)
	if diff := cmp.Diff(&geov1.LatLng{Latitude: 52.52, Longitude: 13.405}, msg, protocmp.Transform()); diff != "" {
		t.Errorf("LatLngProto(%v) mismatch (-want +got):\n%s", p, diff)
	}
	if got := geoproto.LatLng(msg); got != p {
		t.Errorf("LatLng(LatLngProto(%v)) = %v", p, got)
	}
	if got := geoproto.LatLng(nil); got != (geo.LatLng{}) {
		t.Errorf("LatLng(nil) = %v, want the zero point", got)
	}
}
