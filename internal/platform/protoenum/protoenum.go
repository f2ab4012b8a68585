// Package protoenum maps the API's enums (protobuf, int32) to the domain's named string values and back,
// by the one rule every grpcapi adapter follows: the UNSPECIFIED value (0) is the domain's empty value; a
// number the contract does not define decodes to a value no domain accepts ("undefined(42)"), so that the
// domain refuses it as invalid rather than reading it as "unspecified"; and a domain value with no API
// counterpart encodes to UNSPECIFIED.
package protoenum

import "fmt"

// Codec maps the enum P to the domain type D. The zero Codec maps everything to the empty value and
// UNSPECIFIED; build one with New.
type Codec[P ~int32, D ~string] struct {
	toDomain map[P]D
	toProto  map[D]P
}

// New returns the Codec of the given pairs of domain value and API value. It panics when a value appears
// twice on either side or a pair names the empty domain value or UNSPECIFIED, which are each other's
// counterparts by rule: the pairs are a program's constants, and a mistake in them is a bug.
func New[P ~int32, D ~string](pairs map[D]P) Codec[P, D] {
	c := Codec[P, D]{toDomain: make(map[P]D, len(pairs)), toProto: make(map[D]P, len(pairs))}
	for d, p := range pairs {
		if d == "" || p == 0 {
			panic(fmt.Sprintf("protoenum: pair %q = %d names the empty value or UNSPECIFIED", d, p))
		}
		if prev, dup := c.toDomain[p]; dup {
			panic(fmt.Sprintf("protoenum: %d maps to both %q and %q", p, prev, d))
		}
		c.toDomain[p] = d
		c.toProto[d] = p
	}
	return c
}

// Decode returns the domain value of p: "" for UNSPECIFIED, "undefined(N)" for a number with no pair.
func (c Codec[P, D]) Decode(p P) D {
	if p == 0 {
		return ""
	}
	if d, ok := c.toDomain[p]; ok {
		return d
	}
	return D(fmt.Sprintf("undefined(%d)", p))
}

// Encode returns the API value of d: UNSPECIFIED for "" and for a value with no pair.
func (c Codec[P, D]) Encode(d D) P {
	return c.toProto[d]
}
