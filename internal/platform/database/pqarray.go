package database

import (
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/lib/pq"
)

// unwrapPQArrays is prepended to every pooled connection's encode wrappers (OpenPostgres): it hands pgx
// the slice inside a lib/pq array (pq.Array, which River's database/sql driver wraps every array
// parameter in) instead of the array's driver.Valuer. Through the Valuer, pgx got the array as
// PostgreSQL's text literal, parsed it back into values and encoded those: about 100 µs of CPU per River
// insert of one job (twelve arrays), 4–5 % of a dispatch replica's CPU on PostgreSQL. The slice is
// encoded by pgx's own codecs to the same values (a timestamp rounded to the microsecond, as PostgreSQL
// rounded the literal: toMicroseconds). A GenericArray of another element type keeps the Valuer.
func unwrapPQArrays(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	switch v := value.(type) {
	case *pq.StringArray:
		return unwrapSlice(v, func(a pq.StringArray) []string { return a })
	case *pq.Int64Array:
		return unwrapSlice(v, func(a pq.Int64Array) []int64 { return a })
	case *pq.Int32Array:
		return unwrapSlice(v, func(a pq.Int32Array) []int32 { return a })
	case *pq.BoolArray:
		return unwrapSlice(v, func(a pq.BoolArray) []bool { return a })
	case *pq.ByteaArray:
		return unwrapSlice(v, byteas)
	case pq.GenericArray:
		switch a := v.A.(type) {
		case []time.Time, []int16:
			// pgx keeps one plan per parameter type and PostgreSQL type: every GenericArray sent for
			// that PostgreSQL type must hold a slice of the same type (River's always do).
			want := reflect.TypeOf(a)
			return &unwrapPlan{unwrap: func(v any) any {
				if a := v.(pq.GenericArray).A; reflect.TypeOf(a) == want {
					return toMicroseconds(a)
				}
				return errUnwrap
			}}, toMicroseconds(a), true
		}
	}
	return nil, nil, false
}

// unwrapSlice is unwrapPQArrays' plan for a pointer to one of lib/pq's array types: the slice that
// slice(*v) makes of it; a nil pointer keeps the Valuer.
func unwrapSlice[A any, S any](v *A, slice func(A) S) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	if v == nil {
		return nil, nil, false
	}
	return &unwrapPlan{unwrap: func(x any) any { return slice(*x.(*A)) }}, slice(*v), true
}

// toMicroseconds returns a []time.Time rounded to the microsecond, as PostgreSQL rounds the text
// literal lib/pq sends (pgx truncates instead); anything else, and times already whole microseconds,
// as they are.
func toMicroseconds(a any) any {
	ts, ok := a.([]time.Time)
	if !ok {
		return a
	}
	for i, t := range ts {
		if t.Nanosecond()%1000 != 0 {
			out := slices.Clone(ts)
			for j := i; j < len(out); j++ {
				out[j] = out[j].Round(time.Microsecond)
			}
			return out
		}
	}
	return a
}

// byteas is a as pq.ByteaArray sends it: a nil element is an empty bytea, not NULL.
func byteas(a pq.ByteaArray) [][]byte {
	if a == nil {
		return nil
	}
	for i, b := range a {
		if b == nil {
			out := make([][]byte, len(a))
			copy(out, a)
			for j := i; j < len(out); j++ {
				if out[j] == nil {
					out[j] = []byte{}
				}
			}
			return out
		}
	}
	return a
}

// unwrapPlan encodes a value as next encodes what unwrap returns of it. A plan is kept by pgx per
// parameter type and called with every value of that type, hence unwrap rather than the first value.
type unwrapPlan struct {
	unwrap func(any) any
	next   pgtype.EncodePlan
}

func (p *unwrapPlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *unwrapPlan) Encode(value any, buf []byte) ([]byte, error) {
	v := p.unwrap(value)
	if v == errUnwrap {
		return nil, fmt.Errorf("encode %T: element type differs from the first array sent for this parameter type", value)
	}
	return p.next.Encode(v, buf)
}

// errUnwrap is what unwrap returns for a value its plan cannot encode.
var errUnwrap = new(int)
