package prevalid_test

import (
	"testing"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"lastmile/internal/platform/grpcserver/prevalid"
)

func TestUUID(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6a", true},
		{"00000000-0000-0000-0000-000000000000", true},
		{"0190E0C4-7B1A-7C3E-9A55-3F1E2D4C5B6A", false}, // valid for protovalidate, refused here
		{"0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6", false},
		{"0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6g", false},
		{"0190e0c47b1a-7c3e-9a55-3f1e2d4c5b6a-", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := prevalid.UUID(tt.s); got != tt.want {
			t.Errorf("UUID(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestTimestamp(t *testing.T) {
	tests := []struct {
		ts   *timestamppb.Timestamp
		want bool
	}{
		{nil, true},
		{&timestamppb.Timestamp{Seconds: 946684800}, true},
		{&timestamppb.Timestamp{Seconds: 4102444799, Nanos: 999_999_999}, true},
		{&timestamppb.Timestamp{Seconds: 946684799, Nanos: 999_999_999}, false},
		{&timestamppb.Timestamp{Seconds: 4102444800}, false},
		{&timestamppb.Timestamp{Seconds: 1_800_000_000, Nanos: 1_000_000_000}, false},
		{&timestamppb.Timestamp{Seconds: 1_800_000_000, Nanos: -1}, false},
	}
	for _, tt := range tests {
		if got := prevalid.Timestamp(tt.ts); got != tt.want {
			t.Errorf("Timestamp(%v) = %v, want %v", tt.ts, got, tt.want)
		}
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		d    *durationpb.Duration
		want bool
	}{
		{nil, true},
		{&durationpb.Duration{Nanos: 1}, true},
		{&durationpb.Duration{Seconds: 3600}, true},
		{&durationpb.Duration{}, false},
		{&durationpb.Duration{Seconds: 3600, Nanos: 1}, false},
		{&durationpb.Duration{Seconds: -1}, false},
		{&durationpb.Duration{Seconds: 1, Nanos: -1}, false},
		{&durationpb.Duration{Seconds: 1, Nanos: 1_000_000_000}, false},
	}
	for _, tt := range tests {
		if got := prevalid.Duration(tt.d, 3600); got != tt.want {
			t.Errorf("Duration(%v, 3600) = %v, want %v", tt.d, got, tt.want)
		}
	}
}
