package courier_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"lastmile/internal/courier"
	"lastmile/internal/platform/cputime"
)

// BenchmarkFindNearby measures FindNearbyCouriers with 10,000 available couriers spread uniformly over
// a 40 x 40 km city (Berlin), for a typical dispatch query (5 km, 10 results) and the largest allowed
// radius (50 km, 100 results). Queries start at random points in the city.
func BenchmarkFindNearby(b *testing.B) {
	f := newFixture(b, courier.Options{})
	ctx := serviceCtx(b.Context(), "dispatch")
	rng := rand.New(rand.NewPCG(1, 2))
	const lat0, lng0, spanLat, spanLng = 52.34, 13.10, 0.36, 0.59 // about 40 x 40 km
	for n := 1; n <= 10_000; n++ {
		c := f.available(b, n, courier.Modes[n%len(courier.Modes)], 3)
		r := f.svc.NewLocationReport()
		fix := fixAt(lat0+rng.Float64()*spanLat, lng0+rng.Float64()*spanLng, t0.Add(-time.Duration(rng.IntN(240))*time.Second))
		if err := r.Add(ctx, c.ID, []courier.Fix{fix}); err != nil || r.Result().Accepted != 1 {
			b.Fatalf("report: %v %+v", err, r.Result())
		}
	}
	for _, bc := range []struct {
		radius float64
		limit  int
	}{{5_000, 10}, {50_000, 100}} {
		b.Run(fmt.Sprintf("radius=%.0fkm/limit=%d", bc.radius/1000, bc.limit), func(b *testing.B) {
			b.ReportAllocs()
			found := 0
			for b.Loop() {
				res, err := f.svc.FindNearbyCouriers(ctx, courier.NearbyQuery{
					Lat: lat0 + rng.Float64()*spanLat, Lng: lng0 + rng.Float64()*spanLng,
					RadiusMeters: bc.radius, Limit: bc.limit})
				if err != nil {
					b.Fatal(err)
				}
				found += len(res)
			}
			b.ReportMetric(float64(found)/float64(b.N), "results/op")
		})
	}
}

// BenchmarkIngest measures the domain's ingest path alone (validation, rate limit, index update, flush
// queue, watcher fan-out with no watcher), without gRPC: one op is one fix, sent in batches of 100 or one
// at a time. Compare with grpcapi's BenchmarkReportLocations to see what the transport costs.
func BenchmarkIngest(b *testing.B) {
	f := newFixture(b, courier.Options{FixesPerSecond: 1e12, FixBurst: 1 << 40})
	ctx := serviceCtx(b.Context(), "simulator")
	at := t0.Add(-5 * time.Minute) // every fix of the benchmark is a microsecond after the previous one
	for _, batch := range []int{100, 1} {
		c := f.register(b, batch, courier.ModeCar, 1)
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			r := f.svc.NewLocationReport()
			fixes := make([]courier.Fix, batch)
			b.ReportAllocs()
			for i := 0; i < b.N; i += batch {
				for j := range fixes {
					at = at.Add(time.Microsecond)
					fixes[j] = fixAt(52.52, 13.405, at)
				}
				if err := r.Add(ctx, c.ID, fixes); err != nil {
					b.Fatal(err)
				}
			}
			if got := r.Result(); got.RejectedCount() != 0 {
				b.Fatalf("rejected: %+v", got)
			}
		})
	}
}

// BenchmarkClaimCourier measures a claim and its release on the test store (SQLite), as dispatch's
// claim and release jobs make them: one op claims the available courier for a new task and releases it,
// while the courier holds no other claim or four (the dispatch load test keeps about five per courier).
// cpu-ns/op is the process's CPU time (user and system) while the loop runs.
func BenchmarkClaimCourier(b *testing.B) {
	f := newFixture(b, courier.Options{})
	ctx := serviceCtx(b.Context(), "dispatch")
	for i, held := range []int{0, 4} {
		c := f.available(b, i+1, courier.ModeBicycle, held+1)
		for h := range held {
			task := fmt.Sprintf("0190c000-0000-7000-8000-%06d%06d", i+1, h)
			if _, _, err := f.svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: task}); err != nil {
				b.Fatalf("ClaimCourier(%s): %v", task, err)
			}
		}
		b.Run(fmt.Sprintf("held=%d", held), func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			cpu := cputime.Process()
			for b.Loop() {
				n++
				task := fmt.Sprintf("0190c000-0000-7000-8000-%06d%06d", i+1, held+n)
				if _, already, err := f.svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: task}); err != nil || already {
					b.Fatalf("ClaimCourier(%s) = already %v, %v", task, already, err)
				}
				if _, released, err := f.svc.ReleaseCourier(ctx, c.ID, task); err != nil || !released {
					b.Fatalf("ReleaseCourier(%s) = released %v, %v", task, released, err)
				}
			}
			b.ReportMetric(float64((cputime.Process()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkClaimCourierConcurrent measures claims made side by side, as dispatch's claim jobs make them
// (up to 100 at once): 64 goroutines each claim a courier of their own (of 64, holding four other
// claims each) for a new task and release it. cpu-ns/op is the process's CPU time per claim and
// release while the loop runs.
func BenchmarkClaimCourierConcurrent(b *testing.B) {
	const workers = 64
	f := newFixture(b, courier.Options{})
	ctx := serviceCtx(b.Context(), "dispatch")
	ids := make([]string, workers)
	for i := range ids {
		c := f.available(b, 100+i, courier.ModeBicycle, 5)
		ids[i] = c.ID
		for h := range 4 {
			task := fmt.Sprintf("0190c000-0000-7000-8000-%06d%06d", 100+i, h)
			if _, _, err := f.svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: task}); err != nil {
				b.Fatalf("ClaimCourier(%s): %v", task, err)
			}
		}
	}
	b.ReportAllocs()
	var next atomic.Int64
	b.SetParallelism((workers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	cpu := cputime.Process()
	b.RunParallel(func(pb *testing.PB) {
		w := int(next.Add(1) - 1)
		id := ids[w%workers]
		for n := 0; pb.Next(); n++ {
			task := fmt.Sprintf("0190c000-0000-7000-8000-%06d%06d", 100+w, 1000+n)
			if _, already, err := f.svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: id, TaskID: task}); err != nil || already {
				b.Errorf("ClaimCourier(%s) = already %v, %v", task, already, err)
				return
			}
			if _, released, err := f.svc.ReleaseCourier(ctx, id, task); err != nil || !released {
				b.Errorf("ReleaseCourier(%s) = released %v, %v", task, released, err)
				return
			}
		}
	})
	b.ReportMetric(float64((cputime.Process()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
