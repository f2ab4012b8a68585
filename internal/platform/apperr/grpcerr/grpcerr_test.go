package grpcerr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/grpcerr"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		wantCode    codes.Code
		wantMessage string
	}{
		{"invalid", apperr.Errorf(apperr.Invalid, "bad page size"), codes.InvalidArgument, "bad page size"},
		{"not found", apperr.Errorf(apperr.NotFound, "task not found"), codes.NotFound, "task not found"},
		{"conflict", apperr.Errorf(apperr.Conflict, "email taken"), codes.AlreadyExists, "email taken"},
		{"aborted", apperr.Errorf(apperr.Aborted, "version mismatch"), codes.Aborted, "version mismatch"},
		{"permission", apperr.Errorf(apperr.PermissionDenied, "not yours"), codes.PermissionDenied, "not yours"},
		{"unauthenticated", apperr.Errorf(apperr.Unauthenticated, "no token"), codes.Unauthenticated, "no token"},
		{"precondition", apperr.Errorf(apperr.FailedPrecondition, "task delivered"), codes.FailedPrecondition, "task delivered"},
		{"exhausted", apperr.Errorf(apperr.ResourceExhausted, "slow down"), codes.ResourceExhausted, "slow down"},
		{"unavailable", apperr.Errorf(apperr.Unavailable, "route down"), codes.Unavailable, "route down"},
		{"wrapped domain error", fmt.Errorf("load task: %w", apperr.Errorf(apperr.NotFound, "task not found")), codes.NotFound, "task not found"},
		// Internal details never reach the caller, whatever the message says.
		{"internal", apperr.Wrap(apperr.Internal, errors.New("pq: password=secret"), "db exploded"), codes.Internal, "internal error"},
		{"plain error", errors.New("open /etc/secret: permission denied"), codes.Internal, "internal error"},
		{"canceled", fmt.Errorf("query: %w", context.Canceled), codes.Canceled, "request canceled"},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "deadline exceeded"},
		{"status passes through", status.Error(codes.OutOfRange, "past the end"), codes.OutOfRange, "past the end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := grpcerr.ToStatus(tt.err)
			if st.Code() != tt.wantCode || st.Message() != tt.wantMessage {
				t.Errorf("ToStatus(%v) = %v %q, want %v %q", tt.err, st.Code(), st.Message(), tt.wantCode, tt.wantMessage)
			}
		})
	}
	if st := grpcerr.ToStatus(nil); st != nil {
		t.Errorf("ToStatus(nil) = %v, want nil", st)
	}
}

func TestToStatusDetails(t *testing.T) {
	err := &apperr.Error{
		Code:       apperr.Invalid,
		Message:    "invalid request",
		Violations: []apperr.FieldViolation{{Field: "origin.latitude", Description: "must be in -90..90"}},
	}
	got := grpcerr.ToStatus(err).Details()
	want := []any{&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: "origin.latitude", Description: "origin.latitude must be in -90..90"},
	}}}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("details (-want +got):\n%s", diff)
	}

	limited := &apperr.Error{Code: apperr.ResourceExhausted, Message: "too many logins", RetryAfter: 3 * time.Second}
	got = grpcerr.ToStatus(limited).Details()
	want = []any{&errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)}}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("retry details (-want +got):\n%s", diff)
	}
}

func TestFromStatus(t *testing.T) {
	const unavailable, late = "the courier service is unavailable; try again", "the courier service did not answer in time; try again"
	tests := []struct {
		code        codes.Code
		want        apperr.Code
		wantMessage string
	}{
		{codes.InvalidArgument, apperr.Invalid, "peer says no: dial tcp 10.0.0.7:9090"},
		{codes.OutOfRange, apperr.Invalid, "peer says no: dial tcp 10.0.0.7:9090"},
		{codes.NotFound, apperr.NotFound, "peer says no: dial tcp 10.0.0.7:9090"},
		{codes.AlreadyExists, apperr.Conflict, "peer says no: dial tcp 10.0.0.7:9090"},
		{codes.Aborted, apperr.Aborted, "peer says no: dial tcp 10.0.0.7:9090"},
		{codes.PermissionDenied, apperr.PermissionDenied, "peer says no: dial tcp 10.0.0.7:9090"},
		{codes.Unauthenticated, apperr.Unauthenticated, "peer says no: dial tcp 10.0.0.7:9090"},
		{codes.FailedPrecondition, apperr.FailedPrecondition, "peer says no: dial tcp 10.0.0.7:9090"},
		{codes.ResourceExhausted, apperr.ResourceExhausted, "peer says no: dial tcp 10.0.0.7:9090"},
		// A peer's own failures are not the caller's fault: from the caller's side the peer is unavailable,
		// and the message names it, without the peer's or the transport's words (an address).
		{codes.Internal, apperr.Unavailable, unavailable},
		{codes.Unknown, apperr.Unavailable, unavailable},
		{codes.Unimplemented, apperr.Unavailable, unavailable},
		{codes.DataLoss, apperr.Unavailable, unavailable},
		{codes.Unavailable, apperr.Unavailable, unavailable},
		{codes.DeadlineExceeded, apperr.Unavailable, late},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			err := grpcerr.FromStatus("courier", status.Error(tt.code, "peer says no: dial tcp 10.0.0.7:9090"))
			if got := apperr.CodeOf(err); got != tt.want {
				t.Errorf("CodeOf(FromStatus(%v)) = %q, want %q", tt.code, got, tt.want)
			}
			// What the caller's own caller gets.
			if st := grpcerr.ToStatus(fmt.Errorf("get status of courier c1: %w", err)); st.Code() != grpcerr.GRPCCode(tt.want) || st.Message() != tt.wantMessage {
				t.Errorf("ToStatus(FromStatus(%v)) = %v %q, want %v %q", tt.code, st.Code(), st.Message(), grpcerr.GRPCCode(tt.want), tt.wantMessage)
			}
		})
	}
	if err := grpcerr.FromStatus("courier", status.Error(codes.Canceled, "bye")); !errors.Is(err, context.Canceled) {
		t.Errorf("FromStatus(Canceled) = %v, want context.Canceled", err)
	}
	if err := grpcerr.FromStatus("courier", nil); err != nil {
		t.Errorf("FromStatus(nil) = %v, want nil", err)
	}
}

// TestRoundTrip checks that a domain error survives a hop: server ToStatus, client FromStatus.
func TestRoundTrip(t *testing.T) {
	in := &apperr.Error{
		Code: apperr.Invalid, Message: "bad fix",
		Violations: []apperr.FieldViolation{{Field: "fixes[2].recorded_at", Description: "in the future"}},
	}
	out := apperr.As(grpcerr.FromStatus("courier", grpcerr.ToStatus(in).Err()))
	if out == nil {
		t.Fatal("round trip lost the *apperr.Error")
	}
	if out.Code != in.Code || out.Message != in.Message {
		t.Errorf("round trip = %v %q, want %v %q", out.Code, out.Message, in.Code, in.Message)
	}
	if diff := cmp.Diff(in.Violations, out.Violations); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
}
