package courierclient

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
)

// randomNearby returns an answer with every field set at random, some left out, values at the edges of
// their types included.
func randomNearby(r *rand.Rand) *courierv1.FindNearbyCouriersResponse {
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
	str := func() string {
		return []string{"", "0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6a", "Zoë ☃ 𝄞", "x"}[r.IntN(4)]
	}
	m := &courierv1.FindNearbyCouriersResponse{}
	for range r.IntN(25) {
		n := &courierv1.NearbyCourier{DistanceMeters: f64()}
		if r.IntN(8) > 0 {
			s := &courierv1.CourierSnapshot{
				CourierId: str(), TransportMode: geov1.TransportMode(int32(i64())), Status: courierv1.CourierStatus(int32(i64())),
				AvailableNow: r.IntN(2) == 0, ActiveTaskCount: int32(i64()), Capacity: int32(i64()), DisplayName: str(),
			}
			for range r.IntN(12) {
				s.ActiveTaskIds = append(s.ActiveTaskIds, str())
			}
			if r.IntN(4) > 0 {
				s.LastLocation = &courierv1.LocationFix{AccuracyMeters: f64()}
				if r.IntN(5) > 0 {
					s.LastLocation.Location = &geov1.LatLng{Latitude: f64(), Longitude: f64()}
				}
				if r.IntN(5) > 0 {
					s.LastLocation.RecordedAt = &timestamppb.Timestamp{Seconds: i64(), Nanos: int32(i64())}
				}
				if r.IntN(2) == 0 {
					v := f64()
					s.LastLocation.Speed = &v
				}
				if r.IntN(2) == 0 {
					v := f64()
					s.LastLocation.Heading = &v
				}
			}
			if r.IntN(4) > 0 {
				s.LocationAge = &durationpb.Duration{Seconds: i64(), Nanos: int32(i64())}
			}
			n.Courier = s
		}
		m.Couriers = append(m.Couriers, n)
	}
	return m
}

// checkDecode decodes b with decodeNearby and with proto.Unmarshal: when decodeNearby accepts b,
// proto.Unmarshal must too and give the same message (compared by deterministic encoding, so that NaNs
// compare by their bits, and with proto.Equal).
func checkDecode(t *testing.T, b []byte) (accepted bool) {
	t.Helper()
	got := &courierv1.FindNearbyCouriersResponse{}
	if !decodeNearby(b, got) {
		return false
	}
	want := &courierv1.FindNearbyCouriersResponse{}
	if err := proto.Unmarshal(b, want); err != nil {
		t.Fatalf("decodeNearby(%x) accepted what proto.Unmarshal refuses: %v", b, err)
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
	if !bytes.Equal(gb, wb) || !proto.Equal(got, want) && !bytes.Contains(wb, []byte{0xf8, 0x7f}) {
		t.Fatalf("decodeNearby(%x) = %v, want %v", b, got, want)
	}
	return true
}

func TestDecodeNearbyRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		m := randomNearby(r)
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if !checkDecode(t, b) {
			t.Fatalf("decodeNearby(%v) fell back, want it decoded", m)
		}
	}
}

// TestDecodeNearbyMutated: bytes changed at random are decoded as proto.Unmarshal decodes them, or left
// to it.
func TestDecodeNearbyMutated(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	accepted, refused := 0, 0
	for range 20000 {
		b, err := proto.Marshal(randomNearby(r))
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

func TestDecodeNearbyFallsBack(t *testing.T) {
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	snapshot := func(v []byte) []byte { return field(1, field(1, v)) }
	tests := []struct {
		name string
		b    []byte
	}{
		{"unknown field", varint(9, 1)},
		{"unknown field in a courier", field(1, varint(3, 1))},
		{"unknown field in a snapshot", snapshot(varint(11, 1))},
		{"unknown field in a fix", snapshot(field(5, varint(6, 1)))},
		{"unknown field in a point", snapshot(field(5, field(1, varint(3, 1))))},
		{"unknown field in an age", snapshot(field(6, varint(3, 1)))},
		{"a courier as a varint", varint(1, 1)},
		{"an id not UTF-8", snapshot(field(1, []byte{0xff}))},
		{"a task id not UTF-8", snapshot(field(9, []byte{0xc3}))},
		{"a name not UTF-8", snapshot(field(10, []byte{0xed, 0xa0, 0x80}))},
		{"a fixed32", snapshot(protowire.AppendFixed32(protowire.AppendTag(nil, 2, protowire.Fixed32Type), 1))},
		{"truncated", protowire.AppendTag(nil, 1, protowire.BytesType)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if decodeNearby(tt.b, &courierv1.FindNearbyCouriersResponse{}) {
				t.Errorf("decodeNearby(%x) = true, want false", tt.b)
			}
		})
	}
}

// TestDecodeNearbyMerges: a message field repeated in the encoding is merged into the first (its task
// ids appended), and a scalar repeated keeps the last value, as proto.Unmarshal does.
func TestDecodeNearbyMerges(t *testing.T) {
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	fixed := func(num protowire.Number, v float64) []byte {
		return protowire.AppendFixed64(protowire.AppendTag(nil, num, protowire.Fixed64Type), math.Float64bits(v))
	}
	var c []byte
	c = append(c, field(1, append(field(1, []byte("a")), field(9, []byte("t1"))...))...)
	c = append(c, fixed(2, 10)...)
	c = append(c, field(1, append(field(9, []byte("t2")), field(5, fixed(4, 3))...))...)
	c = append(c, field(1, field(5, fixed(5, 90)))...)
	c = append(c, fixed(2, 20)...)
	b := field(1, c)
	if !checkDecode(t, b) {
		t.Fatal("decodeNearby fell back")
	}
	got := &courierv1.FindNearbyCouriersResponse{}
	decodeNearby(b, got)
	n := got.GetCouriers()[0]
	s := n.GetCourier()
	if s.GetCourierId() != "a" || len(s.GetActiveTaskIds()) != 2 || s.GetLastLocation().GetSpeed() != 3 ||
		s.GetLastLocation().GetHeading() != 90 || n.GetDistanceMeters() != 20 {
		t.Errorf("courier = %v, want id a, tasks t1 t2, speed 3, heading 90, distance 20", n)
	}
}

// BenchmarkDecodeNearby: an answer of 20 located couriers holding 5 tasks each, by decodeNearby and by
// proto.Unmarshal.
func BenchmarkDecodeNearby(b *testing.B) {
	m := &courierv1.FindNearbyCouriersResponse{}
	for i := range 20 {
		speed, heading := 4.5, 270.0
		s := &courierv1.CourierSnapshot{
			CourierId: "0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6a", DisplayName: "Courier", TransportMode: geov1.TransportMode_TRANSPORT_MODE_BICYCLE,
			Status: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE, AvailableNow: true, ActiveTaskCount: 5, Capacity: 10,
			LastLocation: &courierv1.LocationFix{
				Location: &geov1.LatLng{Latitude: 52.5 + float64(i)/1000, Longitude: 13.4}, RecordedAt: timestamppb.Now(),
				AccuracyMeters: 5, Speed: &speed, Heading: &heading,
			},
			LocationAge: durationpb.New(1500000000),
		}
		for range 5 {
			s.ActiveTaskIds = append(s.ActiveTaskIds, "0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6b")
		}
		m.Couriers = append(m.Couriers, &courierv1.NearbyCourier{Courier: s, DistanceMeters: 100 * float64(i)})
	}
	enc, err := proto.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decodeNearby", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !decodeNearby(enc, &courierv1.FindNearbyCouriersResponse{}) {
				b.Fatal("fell back")
			}
		}
	})
	b.Run("proto.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := proto.Unmarshal(enc, &courierv1.FindNearbyCouriersResponse{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
