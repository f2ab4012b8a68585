// Package apperr defines the domain's error codes. Domain packages return *Error values; the transport
// boundary (package grpcerr) maps them to gRPC status codes exactly once. Messages in an Error are meant for
// callers; the wrapped cause is for logs only and never leaves the process.
package apperr

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Code classifies an error by what the caller can do about it.
type Code string

// The domain's error codes. Each maps to exactly one gRPC code (see grpcerr).
const (
	// Invalid means the request is malformed; retrying it unchanged will fail again.
	Invalid Code = "invalid"
	// NotFound means the resource does not exist or the caller may not know that it exists.
	NotFound Code = "not_found"
	// Conflict means the resource already exists (a unique key is taken).
	Conflict Code = "conflict"
	// Aborted means a concurrent change won (a version check failed); retrying the whole operation may succeed.
	Aborted Code = "aborted"
	// PermissionDenied means the caller is known but not allowed to do this.
	PermissionDenied Code = "permission_denied"
	// Unauthenticated means the caller did not prove who they are.
	Unauthenticated Code = "unauthenticated"
	// FailedPrecondition means the system is not in a state that allows the operation.
	FailedPrecondition Code = "failed_precondition"
	// ResourceExhausted means a limit or quota was hit; RetryAfter says when to try again, if known.
	ResourceExhausted Code = "resource_exhausted"
	// Unavailable means a dependency is down or overloaded; the call may be retried.
	Unavailable Code = "unavailable"
	// Internal means a bug or an unexpected failure. Its details are logged, never returned.
	Internal Code = "internal"
)

// FieldViolation names one invalid field of a request, for Invalid errors.
type FieldViolation struct {
	// Field is the path of the field, such as "origin.latitude".
	Field string
	// Description says what is wrong, for a human.
	Description string
}

// Error is a domain error: a code, a message safe to show to the caller, and an optional cause.
type Error struct {
	// Code classifies the error.
	Code Code
	// Message is shown to the caller. It must not contain internal details.
	Message string
	// Violations lists invalid fields for Invalid errors.
	Violations []FieldViolation
	// RetryAfter, when positive, tells the caller how long to wait before retrying.
	RetryAfter time.Duration
	// Err is the underlying cause. It is logged, never returned to callers.
	Err error
}

// Error implements error. It includes the cause, so it is for logs, not for callers.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an Error with the given code and a formatted caller-facing message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error with the given code and message whose cause is err.
func Wrap(code Code, err error, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// InvalidFields returns an Invalid error listing the given violations.
func InvalidFields(message string, violations ...FieldViolation) *Error {
	return &Error{Code: Invalid, Message: message, Violations: violations}
}

// InvalidRequest returns an Invalid error listing the given violations, whose message is their sentences
// joined with "; " ("transport_mode is required; capacity must be between 1 and 100"), so that a caller
// who shows only the message still learns everything that is wrong.
func InvalidRequest(violations ...FieldViolation) *Error {
	texts := make([]string, len(violations))
	for i, v := range violations {
		texts[i] = v.Sentence()
	}
	return InvalidFields(strings.Join(texts, "; "), violations...)
}

// predicateStarts are the words a Description begins with when it is a predicate about its field ("must be
// a UUID", "is required") rather than a sentence of its own.
var predicateStarts = []string{"is ", "must ", "may ", "has ", "was ", "are ", "cannot ", "can ", "does ", "should ", "exceeds "}

// Sentence returns the violation as a sentence for people that names its field: a Description that is a
// predicate ("must be a UUID") is prefixed with the field's path ("courier_id must be a UUID"); one that
// already names the field, or is a sentence of its own ("give either email or username, not both"), is
// returned as it is. The transport boundary sends sentences, whatever the domain wrote.
func (v FieldViolation) Sentence() string {
	if v.Field == "" || strings.HasPrefix(v.Description, v.Field+" ") {
		return v.Description
	}
	for _, p := range predicateStarts {
		if strings.HasPrefix(v.Description, p) {
			return v.Field + " " + v.Description
		}
	}
	return v.Description
}

// CodeOf returns the code of the first *Error in err's chain, "" for nil and Internal for any other error.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// MessageOf returns the caller-facing message of err: the Message of an *Error, or a generic text for
// anything else, so that internal details never reach a caller.
func MessageOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.Code != Internal {
		return e.Message
	}
	return "internal error"
}

// As returns the first *Error in err's chain, or nil.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
