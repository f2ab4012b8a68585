package routeclient

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	routev1 "lastmile/gen/go/lastmile/route/v1"
)

// randomMatrix returns a response with every field set at random, some left out, values at the edges of
// their types included.
func randomMatrix(r *rand.Rand) *routev1.ComputeMatrixResponse {
	edge := []int64{0, 1, -1, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64}
	i64 := func() int64 {
		if r.IntN(3) == 0 {
			return edge[r.IntN(len(edge))]
		}
		return r.Int64N(1<<40) - 1<<39
	}
	f64 := func() float64 {
		switch r.IntN(6) {
		case 0:
			return 0
		case 1:
			return math.Inf(1 - 2*r.IntN(2))
		case 2:
			return math.Copysign(0, -1)
		default:
			return r.NormFloat64() * 1e4
		}
	}
	m := &routev1.ComputeMatrixResponse{}
	for range r.IntN(40) {
		e := &routev1.MatrixElement{
			OriginIndex:      int32(i64()),
			DestinationIndex: int32(i64()),
			Condition:        routev1.RouteCondition(int32(i64())),
			DistanceMeters:   f64(),
		}
		if r.IntN(3) > 0 {
			e.Duration = &durationpb.Duration{Seconds: i64(), Nanos: int32(i64())}
		}
		m.Elements = append(m.Elements, e)
	}
	if r.IntN(4) > 0 {
		m.Provider = []string{"geodesic", "osrm", "é ☃ 𝄞", ""}[r.IntN(4)]
	}
	if r.IntN(4) > 0 {
		m.DepartureTime = &timestamppb.Timestamp{Seconds: i64(), Nanos: int32(i64())}
	}
	return m
}

// checkDecode decodes b with decodeMatrix and with proto.Unmarshal: when decodeMatrix accepts b, proto.Unmarshal
// must too and give the same message (compared by deterministic encoding, so that NaNs compare by bits).
func checkDecode(t *testing.T, b []byte) (accepted bool) {
	t.Helper()
	got := &routev1.ComputeMatrixResponse{}
	if !decodeMatrix(b, got) {
		return false
	}
	want := &routev1.ComputeMatrixResponse{}
	if err := proto.Unmarshal(b, want); err != nil {
		t.Fatalf("decodeMatrix(%x) accepted what proto.Unmarshal refuses: %v", b, err)
	}
	opts := proto.MarshalOptions{Deterministic: true}
	gb, err := opts.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	wb, err := opts.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gb, wb) || !proto.Equal(got, want) && !hasNaN(want) {
		t.Fatalf("decodeMatrix(%x) = %v, want %v", b, got, want)
	}
	return true
}

func hasNaN(m *routev1.ComputeMatrixResponse) bool {
	for _, e := range m.GetElements() {
		if math.IsNaN(e.GetDistanceMeters()) {
			return true
		}
	}
	return false
}

func TestDecodeMatrixRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		m := randomMatrix(r)
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if !checkDecode(t, b) {
			t.Fatalf("decodeMatrix(%v) fell back, want it decoded", m)
		}
	}
}

// TestDecodeMatrixMutated: bytes changed at random are decoded as proto.Unmarshal decodes them, or left
// to it.
func TestDecodeMatrixMutated(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	accepted, refused := 0, 0
	for range 20000 {
		b, err := proto.Marshal(randomMatrix(r))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			continue
		}
		for range 1 + r.IntN(3) {
			switch i := r.IntN(len(b)); r.IntN(3) {
			case 0:
				b[i] ^= byte(1 << r.IntN(8))
			case 1:
				b = b[:i]
			default:
				b = append(b[:i:i], append([]byte{byte(r.IntN(256))}, b[i:]...)...)
			}
			if len(b) == 0 {
				break
			}
		}
		if checkDecode(t, b) {
			accepted++
		} else {
			refused++
		}
	}
	if accepted == 0 || refused == 0 {
		t.Errorf("mutations accepted %d, refused %d: want some of each", accepted, refused)
	}
}

func TestDecodeMatrixFallsBack(t *testing.T) {
	elem := protowire.AppendTag(nil, 1, protowire.VarintType)
	elem = protowire.AppendVarint(elem, 3)
	tests := []struct {
		name string
		b    []byte
	}{
		{"unknown field", protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1)},
		{"unknown field in an element", protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType),
			protowire.AppendVarint(protowire.AppendTag(nil, 7, protowire.VarintType), 1))},
		{"element as a varint", protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1)},
		{"provider not UTF-8", protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{0xff})},
		{"truncated", protowire.AppendTag(nil, 1, protowire.BytesType)},
		{"unknown field in a duration", protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType),
			protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType),
				protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 1)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if decodeMatrix(tt.b, &routev1.ComputeMatrixResponse{}) {
				t.Errorf("decodeMatrix(%x) = true, want false", tt.b)
			}
		})
	}
	if !checkDecode(t, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), elem)) {
		t.Error("decodeMatrix of one element fell back")
	}
}

// TestDecodeMatrixMerges: a message field repeated in the encoding is merged into the first, and a scalar
// repeated keeps the last value, as proto.Unmarshal does.
func TestDecodeMatrixMerges(t *testing.T) {
	dur := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType),
			protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v))
	}
	var elem []byte
	elem = append(elem, dur(1, 7)...)
	elem = append(elem, dur(2, 9)...)
	elem = protowire.AppendVarint(protowire.AppendTag(elem, 1, protowire.VarintType), 4)
	elem = protowire.AppendVarint(protowire.AppendTag(elem, 1, protowire.VarintType), 5)
	b := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), elem)
	ts := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 11)
	b = protowire.AppendBytes(protowire.AppendTag(b, 3, protowire.BytesType), ts)
	ts = protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 12)
	b = protowire.AppendBytes(protowire.AppendTag(b, 3, protowire.BytesType), ts)
	if !checkDecode(t, b) {
		t.Fatal("decodeMatrix fell back")
	}
	got := &routev1.ComputeMatrixResponse{}
	decodeMatrix(b, got)
	if e := got.GetElements()[0]; e.GetOriginIndex() != 5 || e.GetDuration().GetSeconds() != 7 || e.GetDuration().GetNanos() != 9 {
		t.Errorf("element = %v, want origin 5 and duration 7 s 9 ns", e)
	}
	if d := got.GetDepartureTime(); d.GetSeconds() != 11 || d.GetNanos() != 12 {
		t.Errorf("departure = %v, want 11 s 12 ns", d)
	}
}

// BenchmarkDecodeMatrix: a 20 x 10 matrix, every element with a route, by decodeMatrix and by
// proto.Unmarshal.
func BenchmarkDecodeMatrix(b *testing.B) {
	m := &routev1.ComputeMatrixResponse{Provider: "geodesic", DepartureTime: timestamppb.Now()}
	for i := range 20 {
		for j := range 10 {
			m.Elements = append(m.Elements, &routev1.MatrixElement{
				OriginIndex: int32(i), DestinationIndex: int32(j), Condition: routev1.RouteCondition_ROUTE_CONDITION_ROUTE_EXISTS,
				DistanceMeters: 1234.5 * float64(i+j), Duration: &durationpb.Duration{Seconds: int64(60 * (i + j)), Nanos: 5e8},
			})
		}
	}
	enc, err := proto.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decodeMatrix", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !decodeMatrix(enc, &routev1.ComputeMatrixResponse{}) {
				b.Fatal("fell back")
			}
		}
	})
	b.Run("proto.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := proto.Unmarshal(enc, &routev1.ComputeMatrixResponse{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
