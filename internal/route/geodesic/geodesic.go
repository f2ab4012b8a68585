// Package geodesic is the built-in route.Provider: it needs no map data and no network. A trip's distance
// is the great-circle (haversine) distance times a per-mode circuity factor, its duration that distance at
// a per-mode average urban speed, stretched for motor traffic by an hour-of-day congestion profile.
//
// The great-circle distance is package geo's (geo.Distance), the same that the courier service ranks
// nearby couriers with and that dispatch's fallback estimate uses.
//
// The model is what a dispatcher needs to rank nearby couriers, not turn-by-turn truth: good to tens of
// percent in a city, consistent, and instant.
package geodesic

import (
	"context"
	"fmt"
	"math"
	"time"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/route"
)

// DefaultCircuity is the ratio of road distance to great-circle distance per mode, geo.Circuity's table:
// cars and vans 1.3, scooters 1.25, bicycles 1.2, pedestrians 1.15 (see geo.Circuity for the sources).
// Read-only: override through Options.Circuity.
var DefaultCircuity = perMode(geo.Circuity)

// DefaultSpeedKMH is the average door-to-door urban speed per mode in km/h, stops and lights included,
// geo.SpeedKMH's table: walking 5, cycling 15, a scooter 25, a car 30, a van 27. Sharing the tables with
// geo.EstimateTravel makes this provider with FlatCongestion answer exactly what dispatch's local fallback
// estimates. Read-only: override through Options.SpeedKMH.
var DefaultSpeedKMH = perMode(geo.SpeedKMH)

// perMode tabulates f over geo.Modes.
func perMode(f func(geo.TransportMode) float64) map[geo.TransportMode]float64 {
	m := make(map[geo.TransportMode]float64, len(geo.Modes))
	for _, mode := range geo.Modes {
		m[mode] = f(mode)
	}
	return m
}

// DefaultCongestion multiplies motor-mode durations by local hour of day: quicker than average at night,
// about +45–50 % in the 08:00 and 17:00 peaks, the shape of the TomTom Traffic Index curves for large
// European cities.
var DefaultCongestion = [24]float64{
	0.85, 0.85, 0.85, 0.85, 0.85, 0.9, // 00–05
	1.0, 1.3, 1.45, 1.3, 1.1, 1.1, // 06–11
	1.15, 1.15, 1.1, 1.15, 1.3, 1.5, // 12–17
	1.4, 1.2, 1.05, 1.0, 0.9, 0.9, // 18–23
}

// FlatCongestion returns a profile of all ones, for Options.Congestion when durations should not depend
// on the hour.
func FlatCongestion() *[24]float64 {
	var p [24]float64
	for i := range p {
		p[i] = 1
	}
	return &p
}

// Options tunes the model. The zero value uses the defaults above in UTC.
type Options struct {
	// Circuity overrides DefaultCircuity for the modes it lists; values must be at least 1.
	Circuity map[geo.TransportMode]float64
	// SpeedKMH overrides DefaultSpeedKMH for the modes it lists; values must be positive.
	SpeedKMH map[geo.TransportMode]float64
	// Congestion overrides DefaultCongestion; multipliers must be positive. Scooters get half of each
	// multiplier's effect, since two-wheelers filter past queues; bicycles and walking get none.
	Congestion *[24]float64
	// Location is the time zone whose hour of day indexes the congestion profile; nil means UTC.
	Location *time.Location
}

// Provider is the geodesic route.Provider. It is immutable and safe for concurrent use.
type Provider struct {
	modes      map[geo.TransportMode]modeModel
	congestion [24]float64
	loc        *time.Location
}

// modeModel is the model of one transport mode.
type modeModel struct {
	circuity float64
	speed    float64 // meters per second
}

var _ route.Provider = (*Provider)(nil)

// New returns a Provider configured by opts. It fails when an override is out of range.
func New(opts Options) (*Provider, error) {
	p := &Provider{modes: make(map[geo.TransportMode]modeModel, len(geo.Modes)), congestion: DefaultCongestion, loc: opts.Location}
	if p.loc == nil {
		p.loc = time.UTC
	}
	for _, m := range geo.Modes {
		c, ok := opts.Circuity[m]
		if !ok {
			c = DefaultCircuity[m]
		}
		if !(c >= 1) || math.IsInf(c, 0) {
			return nil, fmt.Errorf("geodesic: circuity for %s is %v, want a finite value >= 1", m, c)
		}
		v, ok := opts.SpeedKMH[m]
		if !ok {
			v = DefaultSpeedKMH[m]
		}
		if !(v > 0) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("geodesic: speed for %s is %v km/h, want a finite positive value", m, v)
		}
		p.modes[m] = modeModel{circuity: c, speed: v / 3.6}
	}
	if opts.Congestion != nil {
		for h, f := range opts.Congestion {
			if !(f > 0) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("geodesic: congestion at hour %d is %v, want a finite positive value", h, f)
			}
		}
		p.congestion = *opts.Congestion
	}
	return p, nil
}

// Name returns "geodesic".
func (p *Provider) Name() string { return "geodesic" }

// Route returns the modelled estimate for one trip. Identical points are 0 m and 0 s apart.
//
// Errors: apperr.Invalid for an unspecified or unknown mode; the context's error when ctx has ended.
func (p *Provider) Route(ctx context.Context, from, to geo.LatLng, mode geo.TransportMode, departure time.Time) (route.Estimate, error) {
	if err := ctx.Err(); err != nil {
		return route.Estimate{}, err
	}
	model, ok := p.modes[mode]
	if !ok {
		return route.Estimate{}, invalidMode(mode)
	}
	d, dur := model.estimate(from, to, p.factor(mode, departure))
	return route.Estimate{DistanceMeters: d, Duration: dur, Provider: p.Name(), Mode: mode, Departure: departure}, nil
}

// Matrix returns the modelled estimate for every origin and destination pair; every element is Found.
//
// Errors: apperr.Invalid for an unspecified or unknown mode; the context's error when ctx has ended.
func (p *Provider) Matrix(ctx context.Context, origins, destinations []geo.LatLng, mode geo.TransportMode, departure time.Time) (route.Matrix, error) {
	if err := ctx.Err(); err != nil {
		return route.Matrix{}, err
	}
	model, ok := p.modes[mode]
	if !ok {
		return route.Matrix{}, invalidMode(mode)
	}
	factor := p.factor(mode, departure)
	elems := make([]route.MatrixElement, 0, len(origins)*len(destinations))
	for i, o := range origins {
		for j, d := range destinations {
			dist, dur := model.estimate(o, d, factor)
			elems = append(elems, route.MatrixElement{
				OriginIndex: i, DestinationIndex: j, Found: true, DistanceMeters: dist, Duration: dur,
			})
		}
	}
	return route.Matrix{Elements: elems, Provider: p.Name(), Departure: departure}, nil
}

// estimate returns the road distance and the duration, rounded to whole seconds, for one pair.
func (m modeModel) estimate(from, to geo.LatLng, congestion float64) (float64, time.Duration) {
	dist := geo.Distance(from, to) * m.circuity
	seconds := dist / m.speed * congestion
	return dist, time.Duration(math.Round(seconds)) * time.Second
}

// factor returns the congestion multiplier for mode at the local hour of departure.
func (p *Provider) factor(mode geo.TransportMode, departure time.Time) float64 {
	f := p.congestion[departure.In(p.loc).Hour()]
	switch mode {
	case geo.Car, geo.Van:
		return f
	case geo.Scooter:
		return 1 + (f-1)/2
	}
	return 1
}

func invalidMode(m geo.TransportMode) error {
	return apperr.InvalidFields("unsupported transport mode",
		apperr.FieldViolation{Field: "transport_mode", Description: fmt.Sprintf("mode %q is not supported", m)})
}
