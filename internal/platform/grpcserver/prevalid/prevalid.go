// Package prevalid holds the checks that services' grpcserver.Prevalidator implementations share: each
// reports true only for a value that the protovalidate rule it names accepts (it may refuse more: a
// refused request is validated by protovalidate, which gives the exact violations).
package prevalid

import (
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// UUID reports whether s is a UUID in its canonical lowercase form, which `string.uuid` accepts (it also
// accepts uppercase hex, which UUID refuses).
func UUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// The API's time range (`timestamp = {gte: {seconds: 946684800}, lt: {seconds: 4102444800}}`):
// 2000-01-01 to 2100-01-01 UTC.
const (
	minSeconds = 946684800
	maxSeconds = 4102444800
)

// Timestamp reports whether ts is absent or a normalized timestamp within the API's time range.
func Timestamp(ts *timestamppb.Timestamp) bool {
	if ts == nil {
		return true
	}
	s, n := ts.GetSeconds(), ts.GetNanos()
	return s >= minSeconds && s < maxSeconds && n >= 0 && n < 1e9
}

// Duration reports whether d is absent or a normalized duration greater than 0 and at most maxSeconds
// (`duration = {gt: {}, lte: {seconds: maxSeconds}}`).
func Duration(d *durationpb.Duration, maxSeconds int64) bool {
	if d == nil {
		return true
	}
	s, n := d.GetSeconds(), d.GetNanos()
	return s >= 0 && n >= 0 && n < 1e9 && (s > 0 || n > 0) && (s < maxSeconds || s == maxSeconds && n == 0)
}
