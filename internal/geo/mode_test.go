package geo_test

import (
	"testing"

	"lastmile/internal/geo"
)

func TestTransportModeString(t *testing.T) {
	tests := []struct {
		mode geo.TransportMode
		want string
	}{
		{geo.ModeUnspecified, "unspecified"},
		{geo.Bicycle, "bicycle"},
		{geo.Scooter, "scooter"},
		{geo.Car, "car"},
		{geo.Van, "van"},
		{geo.Walking, "walking"},
		{geo.TransportMode("hovercraft"), "hovercraft"},
	}
	for _, tt := range tests {
		if got := tt.mode.String(); got != tt.want {
			t.Errorf("TransportMode(%q).String() = %q, want %q", string(tt.mode), got, tt.want)
		}
	}
}

func TestTransportModeValidAndMotorized(t *testing.T) {
	tests := []struct {
		mode             geo.TransportMode
		valid, motorized bool
	}{
		{geo.ModeUnspecified, false, false},
		{geo.Bicycle, true, false},
		{geo.Scooter, true, true},
		{geo.Car, true, true},
		{geo.Van, true, true},
		{geo.Walking, true, false},
		{geo.TransportMode("Car"), false, false},
		{geo.TransportMode("undefined(42)"), false, false},
	}
	for _, tt := range tests {
		if got := tt.mode.Valid(); got != tt.valid {
			t.Errorf("%q.Valid() = %v, want %v", string(tt.mode), got, tt.valid)
		}
		if got := tt.mode.Motorized(); got != tt.motorized {
			t.Errorf("%q.Motorized() = %v, want %v", string(tt.mode), got, tt.motorized)
		}
	}
	for _, m := range geo.Modes {
		if !m.Valid() {
			t.Errorf("Modes lists %q, which is not Valid", string(m))
		}
	}
	if got := len(geo.Modes); got != 5 {
		t.Errorf("len(Modes) = %d, want 5", got)
	}
}
