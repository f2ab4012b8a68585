// Package grpcerr maps domain errors (package apperr) to gRPC status values and back. Servers call ToStatus
// once, in the error-mapping interceptor; clients call FromStatus at their adapter boundary so that a
// downstream service's codes are translated rather than passed through.
package grpcerr

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"lastmile/internal/platform/apperr"
)

var toGRPC = map[apperr.Code]codes.Code{
	apperr.Invalid:            codes.InvalidArgument,
	apperr.NotFound:           codes.NotFound,
	apperr.Conflict:           codes.AlreadyExists,
	apperr.Aborted:            codes.Aborted,
	apperr.PermissionDenied:   codes.PermissionDenied,
	apperr.Unauthenticated:    codes.Unauthenticated,
	apperr.FailedPrecondition: codes.FailedPrecondition,
	apperr.ResourceExhausted:  codes.ResourceExhausted,
	apperr.Unavailable:        codes.Unavailable,
	apperr.Internal:           codes.Internal,
}

// ErrorDomain and ReasonDependencyUnavailable name the errdetails.ErrorInfo that ToStatus attaches to an
// Unavailable answer a handler gave: the service is up and answered, but something this request needs (its
// database, a peer) is not. Clients may retry later either way; a circuit breaker must not count it against
// the service's connection, which other requests that need nothing else still use (Answered).
const (
	ErrorDomain                 = "lastmile"
	ReasonDependencyUnavailable = "DEPENDENCY_UNAVAILABLE"
)

// Answered reports whether err is a status that a lastmile handler produced for an unavailable
// dependency (see ReasonDependencyUnavailable), rather than one the transport produced because the
// service could not be reached.
func Answered(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain && info.GetReason() == ReasonDependencyUnavailable {
			return true
		}
	}
	return false
}

// GRPCCode returns the gRPC code for a domain code; unknown codes are Internal.
func GRPCCode(c apperr.Code) codes.Code {
	if gc, ok := toGRPC[c]; ok {
		return gc
	}
	return codes.Internal
}

// ToStatus converts err into the status a caller sees. A *apperr.Error keeps its code, message, field
// violations (as errdetails.BadRequest, each description a sentence that names its field: see
// apperr.FieldViolation.Sentence) and retry delay (as errdetails.RetryInfo). An error that already is a
// gRPC status passes through. Context cancellation and deadline errors become Canceled and DeadlineExceeded.
// Anything else becomes Internal with a generic message: the caller never sees internal details.
func ToStatus(err error) *status.Status {
	if err == nil {
		return nil
	}
	if e := apperr.As(err); e != nil {
		code := GRPCCode(e.Code)
		if code == codes.Internal {
			return status.New(codes.Internal, "internal error")
		}
		st := status.New(code, e.Message)
		var details []protoadapt.MessageV1
		if len(e.Violations) > 0 {
			br := &errdetails.BadRequest{}
			for _, v := range e.Violations {
				br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
					Field: v.Field, Description: v.Sentence(),
				})
			}
			details = append(details, br)
		}
		if e.RetryAfter > 0 {
			details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
		}
		if code == codes.Unavailable {
			details = append(details, &errdetails.ErrorInfo{Domain: ErrorDomain, Reason: ReasonDependencyUnavailable})
		}
		if len(details) > 0 {
			if withDetails, derr := st.WithDetails(details...); derr == nil {
				st = withDetails
			}
		}
		return st
	}
	if st, ok := status.FromError(err); ok {
		return st
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded")
	}
	return status.New(codes.Internal, "internal error")
}

// FromStatus translates an error returned by a gRPC client call to the service named peer ("courier",
// "route", "identity") into a domain error, so that callers in the domain see apperr codes instead of a
// peer's gRPC codes. Codes that describe the peer's own trouble (Internal, Unknown, DataLoss,
// Unimplemented, Unavailable) become Unavailable from the caller's point of view, since the caller's request
// was not at fault, with a message naming the peer and nothing else (no address, not the peer's or the
// transport's words): "the courier service is unavailable; try again"; a deadline that ran out becomes
// Unavailable "the courier service did not answer in time; try again". The callers' callers see that
// message (ToStatus), so a client learns which service is down. For the other codes the peer's message is
// kept; field violations are carried over.
func FromStatus(peer string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var code apperr.Code
	switch st.Code() {
	case codes.OK:
		return nil
	case codes.InvalidArgument, codes.OutOfRange:
		code = apperr.Invalid
	case codes.NotFound:
		code = apperr.NotFound
	case codes.AlreadyExists:
		code = apperr.Conflict
	case codes.Aborted:
		code = apperr.Aborted
	case codes.PermissionDenied:
		code = apperr.PermissionDenied
	case codes.Unauthenticated:
		code = apperr.Unauthenticated
	case codes.FailedPrecondition:
		code = apperr.FailedPrecondition
	case codes.ResourceExhausted:
		code = apperr.ResourceExhausted
	case codes.Canceled:
		return context.Canceled
	case codes.DeadlineExceeded:
		return apperr.Wrap(apperr.Unavailable, err, "the "+peer+" service did not answer in time; try again")
	default:
		return apperr.Wrap(apperr.Unavailable, err, "the "+peer+" service is unavailable; try again")
	}
	e := &apperr.Error{Code: code, Message: st.Message(), Err: err}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.Violations = append(e.Violations, apperr.FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		case *errdetails.RetryInfo:
			e.RetryAfter = d.GetRetryDelay().AsDuration()
		}
	}
	return e
}
