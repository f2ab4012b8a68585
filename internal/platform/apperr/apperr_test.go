package apperr_test

import (
	"errors"
	"fmt"
	"testing"

	"lastmile/internal/platform/apperr"
)

func TestCodeOfAndMessageOf(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		wantCode    apperr.Code
		wantMessage string
	}{
		{"nil", nil, "", ""},
		{"domain", apperr.Errorf(apperr.NotFound, "courier %s not found", "c1"), apperr.NotFound, "courier c1 not found"},
		{"wrapped", fmt.Errorf("claim: %w", apperr.Errorf(apperr.FailedPrecondition, "courier full")), apperr.FailedPrecondition, "courier full"},
		{"plain", errors.New("disk on fire"), apperr.Internal, "internal error"},
		{"internal hides message", apperr.Wrap(apperr.Internal, errors.New("x"), "select failed on table users"), apperr.Internal, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := apperr.CodeOf(tt.err); got != tt.wantCode {
				t.Errorf("CodeOf(%v) = %q, want %q", tt.err, got, tt.wantCode)
			}
			if got := apperr.MessageOf(tt.err); got != tt.wantMessage {
				t.Errorf("MessageOf(%v) = %q, want %q", tt.err, got, tt.wantMessage)
			}
		})
	}
}

func TestWrapKeepsCause(t *testing.T) {
	cause := errors.New("connection reset")
	err := apperr.Wrap(apperr.Unavailable, cause, "route unavailable")
	if !errors.Is(err, cause) {
		t.Errorf("errors.Is(Wrap(..., cause), cause) = false, want true")
	}
	if got, want := err.Error(), "unavailable: route unavailable: connection reset"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestSentence(t *testing.T) {
	tests := []struct {
		v    apperr.FieldViolation
		want string
	}{
		{apperr.FieldViolation{Field: "courier_id", Description: "must be a UUID"}, "courier_id must be a UUID"},
		{apperr.FieldViolation{Field: "capacity", Description: "capacity must be between 1 and 100"}, "capacity must be between 1 and 100"},
		{apperr.FieldViolation{Field: "email", Description: "give either email or username, not both"}, "give either email or username, not both"},
		{apperr.FieldViolation{Description: "origins x destinations must not exceed 2500 elements"}, "origins x destinations must not exceed 2500 elements"},
	}
	for _, tt := range tests {
		if got := tt.v.Sentence(); got != tt.want {
			t.Errorf("%+v.Sentence() = %q, want %q", tt.v, got, tt.want)
		}
	}
	err := apperr.InvalidRequest(tests[0].v, tests[1].v)
	if got, want := err.Message, "courier_id must be a UUID; capacity must be between 1 and 100"; got != want {
		t.Errorf("InvalidRequest message = %q, want %q", got, want)
	}
}
