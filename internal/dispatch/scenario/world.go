package scenario

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
)

// courierSpec is a courier as generated.
type courierSpec struct {
	id       string
	mode     geo.TransportMode
	capacity int
	start    geo.LatLng
}

// taskSpec is a task as generated.
type taskSpec struct {
	id         string
	create     time.Time
	ready      time.Time
	pickup     geo.LatLng
	dropoff    geo.LatLng
	size       dispatch.Size
	atPickup   time.Duration // time spent at the pickup
	atDropoff  time.Duration // time spent at the dropoff
	windowEnd  time.Time     // end of the pickup window
	onTimeEdge time.Time     // deliveries after it are late
}

// world is everything a run's seed decides before any policy acts: the same for every policy.
type world struct {
	couriers []courierSpec
	tasks    []taskSpec
}

// newWorld draws the couriers and tasks of cfg from its seed's world stream.
func newWorld(cfg Config) world {
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	var w world
	for i := range cfg.Load.Couriers {
		w.couriers = append(w.couriers, courierSpec{
			id:       fmt.Sprintf("c%03d", i+1),
			mode:     pickMode(rng),
			capacity: 1 + rng.IntN(3),
			start:    pointIn(rng, cfg.City),
		})
	}
	end := cfg.Start.Add(time.Duration(cfg.Load.Hours * float64(time.Hour)))
	meanGap := float64(time.Hour) / cfg.Load.TasksPerHour
	at := cfg.Start
	for n := 1; ; n++ {
		at = at.Add(time.Duration(rng.ExpFloat64() * meanGap).Round(time.Second))
		if !at.Before(end) {
			break
		}
		ready := at.Add(time.Duration(rng.IntN(601)) * time.Second)
		p := pointIn(rng, cfg.City)
		w.tasks = append(w.tasks, taskSpec{
			id:         fmt.Sprintf("t%05d", n),
			create:     at,
			ready:      ready,
			pickup:     p,
			dropoff:    dropoffNear(rng, cfg.City, p),
			size:       pickSize(rng),
			atPickup:   time.Duration(60+rng.IntN(121)) * time.Second,
			atDropoff:  time.Duration(60+rng.IntN(121)) * time.Second,
			windowEnd:  ready.Add(cfg.PickupWindow),
			onTimeEdge: ready.Add(cfg.DeliverWithin),
		})
	}
	return w
}

func pickMode(rng *rand.Rand) geo.TransportMode {
	switch u := rng.Float64(); {
	case u < 0.45:
		return geo.Bicycle
	case u < 0.70:
		return geo.Scooter
	case u < 0.85:
		return geo.Car
	case u < 0.90:
		return geo.Van
	default:
		return geo.Walking
	}
}

func pickSize(rng *rand.Rand) dispatch.Size {
	switch u := rng.Float64(); {
	case u < 0.70:
		return dispatch.SizeSmall
	case u < 0.90:
		return dispatch.SizeMedium
	default:
		return dispatch.SizeLarge
	}
}

// pointIn returns a point uniform over the city's disc.
func pointIn(rng *rand.Rand, c City) geo.LatLng {
	return offset(c.Center, c.Radius*math.Sqrt(rng.Float64()), rng.Float64()*2*math.Pi)
}

// dropoffNear returns a point 0.5 to 4 km from p in a uniform direction, inside the city.
func dropoffNear(rng *rand.Rand, c City, p geo.LatLng) geo.LatLng {
	for {
		q := offset(p, 500+rng.Float64()*3500, rng.Float64()*2*math.Pi)
		if geo.Distance(c.Center, q) <= c.Radius {
			return q
		}
	}
}

// offset returns the point meters from p along bearing (radians), on a local flat approximation (good to
// well under a percent over a city).
func offset(p geo.LatLng, meters, bearing float64) geo.LatLng {
	dLat := meters * math.Cos(bearing) / geo.EarthRadiusMeters
	dLng := meters * math.Sin(bearing) / (geo.EarthRadiusMeters * math.Cos(geo.Radians(p.Lat)))
	return geo.LatLng{Lat: p.Lat + geo.Degrees(dLat), Lng: p.Lng + geo.Degrees(dLng)}
}
