package courierclient

import (
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/platform/grpcclient"
)

// nearbyDecoding decodes FindNearbyCouriers' answer with its messages in arrays (decodeNearby).
var nearbyDecoding = grpcclient.DecodeResponse(decodeNearby)

// nearbyParts are the messages of one search's answer, one array per kind, index i for the i-th courier.
type nearbyParts struct {
	nearby []courierv1.NearbyCourier
	snaps  []courierv1.CourierSnapshot
	fixes  []courierv1.LocationFix
	points []geov1.LatLng
	times  []timestamppb.Timestamp
	ages   []durationpb.Duration
	floats []float64 // speed 2i, heading 2i+1
}

// decodeNearby fills m, a reset message, from b as proto.Unmarshal would, with the messages of the
// couriers (six or seven each) allocated in one array per kind instead of one by one. It reports false for
// anything but FindNearbyCouriersResponse's fields with their own wire types, a malformed encoding, or a
// string that is not UTF-8: grpcclient.DecodeResponse then falls back to proto.Unmarshal.
func decodeNearby(b []byte, m *courierv1.FindNearbyCouriersResponse) bool {
	n := 0
	if !fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, _ []byte) bool {
		if num != 1 || typ != protowire.BytesType {
			return false
		}
		n++
		return true
	}) {
		return false
	}
	if n == 0 {
		return true
	}
	p := nearbyParts{
		nearby: make([]courierv1.NearbyCourier, n),
		snaps:  make([]courierv1.CourierSnapshot, n),
		fixes:  make([]courierv1.LocationFix, n),
		points: make([]geov1.LatLng, n),
		times:  make([]timestamppb.Timestamp, n),
		ages:   make([]durationpb.Duration, n),
		floats: make([]float64, 2*n),
	}
	m.Couriers = make([]*courierv1.NearbyCourier, n)
	i := 0
	return fields(b, func(_ protowire.Number, _ protowire.Type, _ uint64, v []byte) bool {
		m.Couriers[i] = &p.nearby[i]
		ok := p.decodeNearbyCourier(i, v)
		i++
		return ok
	})
}

func (p *nearbyParts) decodeNearbyCourier(i int, b []byte) bool {
	e := &p.nearby[i]
	return fields(b, func(num protowire.Number, typ protowire.Type, u uint64, v []byte) bool {
		switch {
		case num == 1 && typ == protowire.BytesType:
			// A message field seen again is merged into the first, as proto.Unmarshal does.
			e.Courier = &p.snaps[i]
			return p.decodeSnapshot(i, v)
		case num == 2 && typ == protowire.Fixed64Type:
			e.DistanceMeters = math.Float64frombits(u)
			return true
		}
		return false
	})
}

func (p *nearbyParts) decodeSnapshot(i int, b []byte) bool {
	s := &p.snaps[i]
	if s.ActiveTaskIds == nil { // the list's length first, for one allocation
		k := 0
		fields(b, func(num protowire.Number, _ protowire.Type, _ uint64, _ []byte) bool {
			if num == 9 {
				k++
			}
			return true
		})
		if k > 0 {
			s.ActiveTaskIds = make([]string, 0, k)
		}
	}
	return fields(b, func(num protowire.Number, typ protowire.Type, u uint64, v []byte) bool {
		switch typ {
		case protowire.VarintType:
			switch num {
			case 2:
				s.TransportMode = geov1.TransportMode(int32(u))
			case 3:
				s.Status = courierv1.CourierStatus(int32(u))
			case 4:
				s.AvailableNow = protowire.DecodeBool(u)
			case 7:
				s.ActiveTaskCount = int32(u)
			case 8:
				s.Capacity = int32(u)
			default:
				return false
			}
			return true
		case protowire.BytesType:
			switch num {
			case 1, 9, 10:
				if !utf8.Valid(v) {
					return false
				}
				switch num {
				case 1:
					s.CourierId = string(v)
				case 9:
					s.ActiveTaskIds = append(s.ActiveTaskIds, string(v))
				default:
					s.DisplayName = string(v)
				}
				return true
			case 5:
				s.LastLocation = &p.fixes[i]
				return p.decodeFix(i, v)
			case 6:
				s.LocationAge = &p.ages[i]
				return decodeSecondsNanos(v, &s.LocationAge.Seconds, &s.LocationAge.Nanos)
			}
		}
		return false
	})
}

func (p *nearbyParts) decodeFix(i int, b []byte) bool {
	f := &p.fixes[i]
	return fields(b, func(num protowire.Number, typ protowire.Type, u uint64, v []byte) bool {
		switch typ {
		case protowire.Fixed64Type:
			x := math.Float64frombits(u)
			switch num {
			case 3:
				f.AccuracyMeters = x
			case 4:
				p.floats[2*i] = x
				f.Speed = &p.floats[2*i]
			case 5:
				p.floats[2*i+1] = x
				f.Heading = &p.floats[2*i+1]
			default:
				return false
			}
			return true
		case protowire.BytesType:
			switch num {
			case 1:
				f.Location = &p.points[i]
				return fields(v, func(num protowire.Number, typ protowire.Type, u uint64, _ []byte) bool {
					if typ != protowire.Fixed64Type || (num != 1 && num != 2) {
						return false
					}
					if num == 1 {
						f.Location.Latitude = math.Float64frombits(u)
					} else {
						f.Location.Longitude = math.Float64frombits(u)
					}
					return true
				})
			case 2:
				f.RecordedAt = &p.times[i]
				return decodeSecondsNanos(v, &f.RecordedAt.Seconds, &f.RecordedAt.Nanos)
			}
		}
		return false
	})
}

// decodeSecondsNanos decodes a google.protobuf.Duration or Timestamp (int64 seconds = 1, int32 nanos = 2).
func decodeSecondsNanos(b []byte, seconds *int64, nanos *int32) bool {
	return fields(b, func(num protowire.Number, typ protowire.Type, u uint64, _ []byte) bool {
		switch {
		case typ != protowire.VarintType:
			return false
		case num == 1:
			*seconds = int64(u)
		case num == 2:
			*nanos = int32(u)
		default:
			return false
		}
		return true
	})
}

// fields calls f with each field of the encoded message b in order: its number, its wire type and its
// value (a varint or fixed64 in u, the bytes of a length-delimited field in v). It reports false when b
// is malformed, holds a fixed32 or group field (none of the messages decoded here has one), or f reports
// false.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, u uint64, v []byte) bool) bool {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return false
		}
		b = b[l:]
		var (
			u uint64
			v []byte
		)
		switch typ {
		case protowire.VarintType:
			u, l = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			u, l = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			v, l = protowire.ConsumeBytes(b)
		default:
			return false
		}
		if l < 0 {
			return false
		}
		b = b[l:]
		if !f(num, typ, u, v) {
			return false
		}
	}
	return true
}
