package grpcapi_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/courier"
	"lastmile/internal/platform/auth"
)

// BenchmarkReportLocations measures location ingest through the whole server (bufconn, grpcserver's
// interceptor chain with authentication, authorization, validation of every message, the domain's
// per-fix checks, the spatial index and watchers' fan-out with no watcher open):
//
//   - stream: one ReportLocations stream carrying 100 fixes per message, as the courier app batches;
//   - call-per-fix: one ReportLocations call per fix (open, one message of one fix, close), which costs
//     what a unary RPC per fix would: a new HTTP/2 stream, headers, the full chain and a response.
//
// Each op is one fix in both variants; compare ns/op, B/op and allocs/op, and fixes/s. The rate limit is
// lifted and the clock frozen so that every fix is accepted.
func BenchmarkReportLocations(b *testing.B) {
	now := time.Date(2031, 3, 14, 9, 20, 0, 0, time.UTC)
	opts := courier.Options{Now: func() time.Time { return now }, FixesPerSecond: 1e12, FixBurst: 1 << 40}
	e := start(b, opts)
	c := e.courierUser(b, 1, 1)
	first := now.Add(-5 * time.Minute)
	var seq int64
	fix := func() *courierv1.LocationFix {
		seq++
		return &courierv1.LocationFix{
			Location:   &geov1.LatLng{Latitude: 52.52, Longitude: 13.405},
			RecordedAt: timestamppb.New(first.Add(time.Duration(seq) * time.Microsecond)),
		}
	}

	b.Run("stream-100-per-message", func(b *testing.B) {
		ctx := callCtx(b, as(1, auth.RoleCourier))
		stream, err := e.client.ReportLocations(ctx)
		if err != nil {
			b.Fatal(err)
		}
		sent := 0
		b.ReportAllocs()
		b.ResetTimer()
		for sent < b.N {
			n := min(100, b.N-sent)
			req := &courierv1.ReportLocationsRequest{CourierId: c.GetId(), Fixes: make([]*courierv1.LocationFix, n)}
			for i := range req.Fixes {
				req.Fixes[i] = fix()
			}
			if err := stream.Send(req); err != nil {
				b.Fatal(err)
			}
			sent += n
		}
		res, err := stream.CloseAndRecv()
		b.StopTimer()
		if err != nil || int(res.GetAcceptedCount()) != b.N {
			b.Fatalf("ReportLocations = %v, %v; want %d accepted", res, err, b.N)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fixes/s")
	})

	b.Run("call-per-fix", func(b *testing.B) {
		ctx := callCtx(b, as(1, auth.RoleCourier))
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			stream, err := e.client.ReportLocations(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := stream.Send(&courierv1.ReportLocationsRequest{CourierId: c.GetId(), Fixes: []*courierv1.LocationFix{fix()}}); err != nil {
				b.Fatal(err)
			}
			res, err := stream.CloseAndRecv()
			if err != nil || res.GetAcceptedCount() != 1 {
				b.Fatalf("ReportLocations = %v, %v; want 1 accepted", res, err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fixes/s")
	})
}
