package routeclient

import (
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	routev1 "lastmile/gen/go/lastmile/route/v1"
)

// decodeMatrix fills m, a reset message, from b as proto.Unmarshal would, with the elements and their
// durations allocated in two arrays instead of two allocations per element (a matrix has up to 2,500).
// It reports false for anything but the fields of ComputeMatrixResponse with their own wire types, a
// malformed encoding, or a provider that is not UTF-8: grpcclient.DecodeResponse then falls back to
// proto.Unmarshal.
func decodeMatrix(b []byte, m *routev1.ComputeMatrixResponse) bool {
	n := 0
	for rest := b; len(rest) > 0; {
		num, typ, l := protowire.ConsumeTag(rest)
		if l < 0 {
			return false
		}
		rest = rest[l:]
		if num == 1 && typ == protowire.BytesType {
			n++
		}
		if l = protowire.ConsumeFieldValue(num, typ, rest); l < 0 {
			return false
		}
		rest = rest[l:]
	}
	var (
		elems []routev1.MatrixElement
		durs  []durationpb.Duration
	)
	if n > 0 {
		elems = make([]routev1.MatrixElement, n)
		durs = make([]durationpb.Duration, n)
		m.Elements = make([]*routev1.MatrixElement, 0, n)
	}
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		b = b[l:] // the first pass checked every tag and value
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			b = b[l:]
			i := len(m.Elements)
			if !decodeElement(v, &elems[i], &durs[i]) {
				return false
			}
			m.Elements = append(m.Elements, &elems[i])
		case num == 2 && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			b = b[l:]
			if !utf8.Valid(v) {
				return false
			}
			m.Provider = string(v)
		case num == 3 && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			b = b[l:]
			if m.DepartureTime == nil {
				m.DepartureTime = &timestamppb.Timestamp{}
			}
			if !decodeSecondsNanos(v, &m.DepartureTime.Seconds, &m.DepartureTime.Nanos) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// decodeElement decodes one MatrixElement into e; its duration, when present, is dur.
func decodeElement(b []byte, e *routev1.MatrixElement, dur *durationpb.Duration) bool {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return false
		}
		b = b[l:]
		switch {
		case num >= 1 && num <= 3 && typ == protowire.VarintType:
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return false
			}
			b = b[l:]
			switch num {
			case 1:
				e.OriginIndex = int32(v)
			case 2:
				e.DestinationIndex = int32(v)
			default:
				e.Condition = routev1.RouteCondition(int32(v))
			}
		case num == 4 && typ == protowire.Fixed64Type:
			v, l := protowire.ConsumeFixed64(b)
			if l < 0 {
				return false
			}
			b = b[l:]
			e.DistanceMeters = math.Float64frombits(v)
		case num == 5 && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return false
			}
			b = b[l:]
			// A message field seen again is merged into the first, as proto.Unmarshal does.
			e.Duration = dur
			if !decodeSecondsNanos(v, &dur.Seconds, &dur.Nanos) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// decodeSecondsNanos decodes a google.protobuf.Duration or Timestamp (int64 seconds = 1, int32 nanos = 2).
func decodeSecondsNanos(b []byte, seconds *int64, nanos *int32) bool {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 || typ != protowire.VarintType || (num != 1 && num != 2) {
			return false
		}
		b = b[l:]
		v, l := protowire.ConsumeVarint(b)
		if l < 0 {
			return false
		}
		b = b[l:]
		if num == 1 {
			*seconds = int64(v)
		} else {
			*nanos = int32(v)
		}
	}
	return true
}
