package courier_test

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// known is what the property test knows about one courier, for its brute-force scan.
type known struct {
	id       string
	mode     courier.Mode
	status   courier.Status
	free     int
	lat, lng float64
	at       time.Time
}

type found struct {
	ID   string
	Dist float64
}

// bruteForce answers q by scanning every courier.
func bruteForce(all []known, q courier.NearbyQuery, now time.Time) []found {
	limit := cmp.Or(q.Limit, courier.DefaultNearbyLimit)
	maxAge := cmp.Or(q.MaxLocationAge, courier.DefaultMaxLocationAge)
	var out []found
	for _, k := range all {
		if k.status != courier.StatusAvailable || k.free < max(q.MinFreeCapacity, 1) ||
			(len(q.Modes) > 0 && !slices.Contains(q.Modes, k.mode)) ||
			now.Sub(k.at) > maxAge || slices.Contains(q.Exclude, k.id) {
			continue
		}
		if d := courier.Distance(q.Lat, q.Lng, k.lat, k.lng); d <= q.RadiusMeters {
			out = append(out, found{k.id, d})
		}
	}
	slices.SortFunc(out, func(a, b found) int { return cmp.Or(cmp.Compare(a.Dist, b.Dist), cmp.Compare(a.ID, b.ID)) })
	return out[:min(len(out), limit)]
}

// TestFindNearbyMatchesBruteForce: random couriers around hard places (a dense city, the antimeridian,
// a pole) and random queries; the grid search returns exactly what a scan of every courier returns, in
// the same order.
func TestFindNearbyMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	f := newFixture(t, courier.Options{FixBurst: 1000})
	ctx := testContext(t)
	dispatch := serviceCtx(ctx, "dispatch")
	centers := [][2]float64{{52.52, 13.405}, {0.01, 179.995}, {-0.01, -179.995}, {89.95, 0}, {-36.85, 174.76}}
	jitter := func(deg float64) float64 { return (rng.Float64()*2 - 1) * deg }

	var all []known
	statuses := []courier.Status{courier.StatusAvailable, courier.StatusAvailable, courier.StatusAvailable, courier.StatusOnBreak, courier.StatusOffline}
	for n := 1; n <= 400; n++ {
		mode := courier.Modes[rng.IntN(len(courier.Modes))]
		capacity := 1 + rng.IntN(3)
		c := f.register(t, n, mode, capacity)
		k := known{id: c.ID, mode: mode, status: statuses[rng.IntN(len(statuses))], free: capacity}
		if _, err := f.svc.SetStatus(adminCtx(ctx), c.ID, k.status); err != nil {
			t.Fatal(err)
		}
		if k.status == courier.StatusAvailable {
			for task := range rng.IntN(capacity + 1) {
				if _, _, err := f.svc.ClaimCourier(dispatch, courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(n*10 + task)}); err != nil {
					t.Fatal(err)
				}
				k.free--
			}
		}
		if n%10 == 0 {
			// Some couriers land exactly on another's spot, to exercise ties.
			prev := all[len(all)-1]
			k.lat, k.lng = prev.lat, prev.lng
		} else {
			ctr := centers[rng.IntN(len(centers))]
			spread := []float64{0.01, 0.1, 0.5}[rng.IntN(3)]
			k.lat = min(max(ctr[0]+jitter(spread), -90), 90)
			k.lng = ctr[1] + jitter(spread)
			if k.lng > 180 {
				k.lng -= 360
			} else if k.lng < -180 {
				k.lng += 360
			}
		}
		k.at = t0.Add(-time.Duration(rng.IntN(600)) * time.Second)
		if got := f.report(t, c.ID, fixAt(k.lat, k.lng, k.at)); got.Accepted != 1 {
			t.Fatalf("report(%+v) = %+v, want accepted", k, got)
		}
		all = append(all, k)
	}

	for i := range 500 {
		ctr := centers[rng.IntN(len(centers))]
		q := courier.NearbyQuery{
			Lat:             min(max(ctr[0]+jitter(0.3), -90), 90),
			Lng:             ctr[1] + jitter(0.3),
			RadiusMeters:    []float64{50, 500, 2_000, 10_000, 50_000}[rng.IntN(5)] * (0.5 + rng.Float64()/2),
			Limit:           rng.IntN(15),
			MinFreeCapacity: rng.IntN(3),
			MaxLocationAge:  time.Duration(rng.IntN(11)) * time.Minute,
		}
		if q.Lng > 180 {
			q.Lng -= 360
		} else if q.Lng < -180 {
			q.Lng += 360
		}
		if rng.IntN(3) == 0 {
			q.Modes = []courier.Mode{courier.Modes[rng.IntN(5)], courier.ModeCar}
			q.Modes = slices.Compact(slices.Sorted(slices.Values(q.Modes)))
		}
		for range rng.IntN(4) {
			if id := all[rng.IntN(len(all))].id; !slices.Contains(q.Exclude, id) {
				q.Exclude = append(q.Exclude, id)
			}
		}
		res, err := f.svc.FindNearbyCouriers(dispatch, q)
		if err != nil {
			t.Fatalf("query %d %+v: %v", i, q, err)
		}
		got := make([]found, len(res))
		for j, r := range res {
			got[j] = found{r.Snapshot.Courier.ID, r.DistanceMeters}
			if !r.Snapshot.HasLocation {
				t.Errorf("query %d: result %s has no location", i, r.Snapshot.Courier.ID)
			}
		}
		if diff := gocmp.Diff(bruteForce(all, q, t0), got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("query %d %+v: FindNearbyCouriers vs brute force (-want +got):\n%s", i, q, diff)
		}
	}
}

func TestFindNearbyValidation(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := serviceCtx(testContext(t), "dispatch")
	ok := courier.NearbyQuery{Lat: 52.5, Lng: 13.4, RadiusMeters: 1000}
	tests := []struct {
		name string
		edit func(q *courier.NearbyQuery)
	}{
		{"latitude", func(q *courier.NearbyQuery) { q.Lat = 91 }},
		{"zero radius", func(q *courier.NearbyQuery) { q.RadiusMeters = 0 }},
		{"radius over 50 km", func(q *courier.NearbyQuery) { q.RadiusMeters = 50_001 }},
		{"limit", func(q *courier.NearbyQuery) { q.Limit = 101 }},
		{"duplicate mode", func(q *courier.NearbyQuery) { q.Modes = []courier.Mode{courier.ModeCar, courier.ModeCar} }},
		{"undefined mode", func(q *courier.NearbyQuery) { q.Modes = []courier.Mode{"jetpack"} }},
		{"free capacity", func(q *courier.NearbyQuery) { q.MinFreeCapacity = 101 }},
		{"exclude id", func(q *courier.NearbyQuery) { q.Exclude = []string{"nope"} }},
		{"location age", func(q *courier.NearbyQuery) { q.MaxLocationAge = time.Hour + time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := ok
			tt.edit(&q)
			_, err := f.svc.FindNearbyCouriers(ctx, q)
			apperrtest.WantCode(t, "FindNearbyCouriers", err, apperr.Invalid)
		})
	}
	_, err := f.svc.FindNearbyCouriers(dispatcherCtx(testContext(t)), ok)
	apperrtest.WantCode(t, "FindNearbyCouriers as a dispatcher user", err, apperr.PermissionDenied)
}
