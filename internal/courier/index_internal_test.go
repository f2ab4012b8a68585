package courier

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestGridRingsMatchScan drives the ring search directly, whatever the box size that nearby would use to
// choose between rings and a scan, and checks it against a scan of every courier, including the early
// stop (small limits in dense areas), the antimeridian and the poles.
func TestGridRingsMatchScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	g := newGrid()
	centers := [][2]float64{{52.52, 13.405}, {0, 180}, {0, -180}, {89.99, 45}, {-89.9, -120}, {1.3, 103.8}}
	wrap := func(lng float64) float64 {
		for lng > 180 {
			lng -= 360
		}
		for lng < -180 {
			lng += 360
		}
		return lng
	}
	clampLat := func(lat float64) float64 { return min(max(lat, -90), 90) }
	var all []*entry
	for n := range 3000 {
		ctr := centers[rng.IntN(len(centers))]
		spread := []float64{0.005, 0.05, 0.4}[rng.IntN(3)]
		e := &entry{c: Courier{ID: fmt.Sprintf("c%05d", n)}, hasLoc: true}
		e.loc.Lat = clampLat(ctr[0] + (rng.Float64()*2-1)*spread)
		e.loc.Lng = wrap(ctr[1] + (rng.Float64()*2-1)*spread)
		g.put(e)
		all = append(all, e)
	}
	// Moving couriers around must keep the index consistent.
	for _, e := range all {
		if rng.IntN(4) == 0 {
			e.loc.Lat = clampLat(e.loc.Lat + (rng.Float64()*2-1)*0.05)
			e.loc.Lng = wrap(e.loc.Lng + (rng.Float64()*2-1)*0.05)
			g.put(e)
		}
	}
	indexed := 0
	for k, m := range g.cells {
		for _, e := range m {
			indexed++
			if want := (cellKey{cellRow(e.loc.Lat), cellCol(e.loc.Lng)}); k != want {
				t.Errorf("courier %s at (%v, %v) is in cell %v, want %v", e.c.ID, e.loc.Lat, e.loc.Lng, k, want)
			}
		}
	}
	if g.size != 3000 || indexed != 3000 {
		t.Fatalf("grid size = %d with %d indexed, want 3000", g.size, indexed)
	}

	admitsEven := func(e *entry) bool { return e.c.ID[len(e.c.ID)-1]%2 == 0 }
	ids := func(hs []hit) []string {
		out := make([]string, len(hs))
		for i, h := range hs {
			out[i] = fmt.Sprintf("%s@%.6f", h.e.c.ID, h.dist)
		}
		return out
	}
	ringRuns := 0
	for i := range 400 {
		ctr := centers[rng.IntN(len(centers))]
		lat := clampLat(ctr[0] + (rng.Float64()*2-1)*0.3)
		lng := wrap(ctr[1] + (rng.Float64()*2-1)*0.3)
		radius := []float64{100, 1_000, 5_000, 20_000, 50_000}[rng.IntN(5)]
		limit := 1 + rng.IntN(20)
		admits := func(*entry) bool { return true }
		if i%2 == 1 {
			admits = admitsEven
		}
		want := g.scan(lat, lng, radius, limit, admits)
		if b := boxAround(lat, lng, radius); b.cells() <= 500_000 {
			ringRuns++
			if got := g.rings(lat, lng, radius, limit, admits, b); !slices.Equal(ids(want), ids(got)) {
				t.Fatalf("query %d (%v, %v, %v m, limit %d): rings = %v, scan = %v", i, lat, lng, radius, limit, ids(got), ids(want))
			}
		}
		if got := g.nearby(lat, lng, radius, limit, admits); !slices.Equal(ids(want), ids(got)) {
			t.Fatalf("query %d (%v, %v, %v m, limit %d): nearby = %v, scan = %v", i, lat, lng, radius, limit, ids(got), ids(want))
		}
	}
	if ringRuns < 300 {
		t.Errorf("only %d of 400 queries ran the ring search; the test lost its point", ringRuns)
	}
}

// TestGridNearbyMatchesBruteForce checks nearby against the definition, without the index or best: every
// admitted courier within the radius by Distance, nearest first (ties by id), the first limit, with
// their distances to the bit. Couriers crowd a few places (a city, both sides of the antimeridian, near a
// pole, on one spot) so that the kept set fills early and the windows of best skip most of the rest.
func TestGridNearbyMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 13))
	g := newGrid()
	centers := [][2]float64{{52.52, 13.405}, {0, 179.999}, {0, -179.999}, {89.95, 45}, {-89.99, -120}, {10, 20}}
	var all []*entry
	for n := range 4000 {
		ctr := centers[rng.IntN(len(centers))]
		spread := []float64{0, 0.001, 0.02, 0.3}[rng.IntN(4)]
		e := &entry{c: Courier{ID: fmt.Sprintf("c%05d", n)}, hasLoc: true}
		e.loc.Lat = min(max(ctr[0]+(rng.Float64()*2-1)*spread, -90), 90)
		e.loc.Lng = ctr[1] + (rng.Float64()*2-1)*spread
		if e.loc.Lng > 180 {
			e.loc.Lng -= 360
		} else if e.loc.Lng < -180 {
			e.loc.Lng += 360
		}
		g.put(e)
		all = append(all, e)
	}
	key := func(hs []hit) []string {
		out := make([]string, len(hs))
		for i, h := range hs {
			out[i] = fmt.Sprintf("%s@%v", h.e.c.ID, h.dist)
		}
		return out
	}
	for i := range 600 {
		ctr := centers[rng.IntN(len(centers))]
		lat := min(max(ctr[0]+(rng.Float64()*2-1)*0.05, -90), 90)
		lng := ctr[1] + (rng.Float64()*2-1)*0.05
		if lng > 180 {
			lng -= 360
		} else if lng < -180 {
			lng += 360
		}
		radius := []float64{50, 1_000, 3_000, 20_000, 50_000}[rng.IntN(5)]
		limit := []int{1, 2, 5, 20, 100}[rng.IntN(5)]
		admits := func(e *entry) bool { return i%3 != 1 || e.c.ID[len(e.c.ID)-1]%2 == 0 }
		var want []hit
		for _, e := range all {
			if d := Distance(lat, lng, e.loc.Lat, e.loc.Lng); d <= radius && admits(e) {
				want = append(want, hit{e, d})
			}
		}
		slices.SortFunc(want, compareHits)
		want = want[:min(len(want), limit)]
		if got := g.nearby(lat, lng, radius, limit, admits); !slices.Equal(key(want), key(got)) {
			t.Fatalf("query %d (%v, %v, %v m, limit %d): nearby = %v, want %v", i, lat, lng, radius, limit, key(got), key(want))
		}
		if got := g.scan(lat, lng, radius, limit, admits); !slices.Equal(key(want), key(got)) {
			t.Fatalf("query %d (%v, %v, %v m, limit %d): scan = %v, want %v", i, lat, lng, radius, limit, key(got), key(want))
		}
	}
}
