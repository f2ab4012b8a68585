package osrm

import (
	"testing"
	"time"
)

// FuzzDecodeTable feeds arbitrary bodies to the table decoder: it must never panic, and whatever it
// accepts must be a well-formed row-major matrix of the requested shape.
func FuzzDecodeTable(f *testing.F) {
	f.Add([]byte(`{"code":"Ok","durations":[[1,null],[3,4]],"distances":[[10,null],[30,40]]}`), 2, 2)
	f.Add([]byte(`{"code":"Ok","durations":[[0.5]],"distances":[[1]]}`), 1, 1)
	f.Add([]byte(`{"code":"NoRoute"}`), 1, 1)
	f.Add([]byte(`{"code":"Ok","durations":[[1e300]],"distances":[[1]]}`), 1, 1)
	f.Add([]byte(`{"code":"Ok","durations":[[1,2]],"distances":[[1]]}`), 1, 2)
	f.Add([]byte(`null`), 0, 0)
	f.Fuzz(func(t *testing.T, body []byte, n, m int) {
		// The service never asks for more than 100 x 100; negative sizes cannot occur.
		if n < 0 || m < 0 || n > 100 || m > 100 {
			return
		}
		elems, err := decodeTable(body, n, m)
		if err != nil {
			return
		}
		if len(elems) != n*m {
			t.Fatalf("decodeTable(%q, %d, %d) returned %d elements, want %d", body, n, m, len(elems), n*m)
		}
		for k, e := range elems {
			if e.OriginIndex != k/m || e.DestinationIndex != k%m {
				t.Fatalf("element %d has indexes (%d, %d), want (%d, %d)", k, e.OriginIndex, e.DestinationIndex, k/m, k%m)
			}
			if e.DistanceMeters < 0 || e.Duration < 0 || e.Duration%time.Second != 0 {
				t.Fatalf("element %d = %+v, want non-negative distance and whole non-negative seconds", k, e)
			}
			if !e.Found && (e.DistanceMeters != 0 || e.Duration != 0) {
				t.Fatalf("element %d = %+v: not found but carries values", k, e)
			}
		}
	})
}
