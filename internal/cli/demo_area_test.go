package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/simulator"
	"lastmile/internal/web"
)

func TestDemoArea(t *testing.T) {
	paris := simulator.Area{Center: simulator.Point{Lat: 48.8566, Lng: 2.3522}, RadiusMeters: 5000}
	for _, tt := range []struct {
		in   simulator.Area
		want web.Area
	}{
		{simulator.Berlin, web.Area{Name: "Berlin", Latitude: 52.52, Longitude: 13.405, RadiusMeters: simulator.Berlin.RadiusMeters}},
		{simulator.Area{Center: simulator.Berlin.Center, RadiusMeters: 4000}, web.Area{Name: "Berlin", Latitude: 52.52, Longitude: 13.405, RadiusMeters: 4000}},
		{paris, web.Area{Name: "simulated area", Latitude: 48.8566, Longitude: 2.3522, RadiusMeters: 5000}},
	} {
		if diff := cmp.Diff(tt.want, *demoArea(tt.in)); diff != "" {
			t.Errorf("demoArea(%+v) (-want +got):\n%s", tt.in, diff)
		}
	}
}
