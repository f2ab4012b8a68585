package storetest

import (
	"fmt"
	"testing"
	"time"

	"lastmile/internal/courier"
)

// BenchSaveLocations measures SaveLocations as the Service's flusher calls it: one op is one batch
// holding a newer fix of each of n couriers, so every row of the batch is updated, for n = 100, the
// Service's default flush batch (courier.DefaultFlushBatch) and 5,000 (more than one statement of the
// SQL store). It reports ns per fix and fixes/s besides ns per batch. s must be empty; the benchmark
// registers the couriers itself.
func BenchSaveLocations(b *testing.B, s courier.Store) {
	ctx := b.Context()
	const most = 5_000
	for n := 1; n <= most; n++ {
		if err := s.CreateCourier(ctx, newCourier(n)); err != nil {
			b.Fatalf("CreateCourier(%d): %v", n, err)
		}
	}
	at := base
	for _, n := range []int{100, courier.DefaultFlushBatch, most} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			batch := make([]courier.LocationFix, n)
			b.ReportAllocs()
			for b.Loop() {
				at = at.Add(time.Microsecond)
				for i := range batch {
					batch[i] = newFix(i+1, at)
				}
				if err := s.SaveLocations(ctx, batch); err != nil {
					b.Fatalf("SaveLocations(%d fixes): %v", n, err)
				}
			}
			perFix := float64(b.Elapsed().Nanoseconds()) / float64(b.N*n)
			b.ReportMetric(perFix, "ns/fix")
			b.ReportMetric(1e9/perFix, "fixes/s")
		})
	}
}
