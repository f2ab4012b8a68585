package grpcapi

import (
	"context"
	"errors"
	"io"
	"maps"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/geo/geoproto"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/grpcerr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/protoenum"
)

var drainCodes = protoenum.New(map[dispatch.DrainCode]dispatchv1.DrainReason{
	dispatch.DrainServerShutdown:      dispatchv1.DrainReason_DRAIN_REASON_SERVER_SHUTDOWN,
	dispatch.DrainSessionReplaced:     dispatchv1.DrainReason_DRAIN_REASON_SESSION_REPLACED,
	dispatch.DrainCredentialsExpiring: dispatchv1.DrainReason_DRAIN_REASON_CREDENTIALS_EXPIRING,
	dispatch.DrainAccountDisabled:     dispatchv1.DrainReason_DRAIN_REASON_ACCOUNT_DISABLED,
})

// StreamAssignments implements dispatchv1.DispatchServiceServer: the courier app's session.
//
// The first message must be hello (anything else ends the stream with InvalidArgument), which opens the
// domain session (dispatch.Service.OpenSession); started follows. Then two goroutines feed this one, the
// stream's only sender: a reader, which receives the app's messages (each ack and command first takes a
// token from the courier's message budget, sess.Admit, whose ResourceExhausted ends the stream; acks go
// to the session; commands are executed in the order received and answered with command_result, a
// command that breaks its rules, or of a kind this server does not know, with one saying so,
// INVALID_COMMAND, see withinCommand; a second hello
// ends the stream with InvalidArgument, as does any other invalid message), and a pump, which calls the session's Next for the
// deliveries and drains to send. The stream ends with the error that ended either (Next's Aborted after
// a replacement, Unavailable after a drain's grace, an ack beyond the cursors sent, an exhausted
// budget), with OK when the app half-closes, and with the context's error when the app goes away. Every
// message carries the server's clock.
func (s *Server) StreamAssignments(stream dispatchv1.DispatchService_StreamAssignmentsServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	h := first.GetHello()
	if h == nil {
		return apperr.InvalidFields("the first message must be hello", apperr.FieldViolation{Field: "hello", Description: "is required in the first message"})
	}
	sess, err := s.svc.OpenSession(ctx, dispatch.Hello{
		ResumeCursor: h.GetResumeCursor(), Epoch: h.GetCursorEpoch(), AppVersion: h.GetAppVersion(), Capabilities: h.GetCapabilities(),
	})
	if err != nil {
		return err
	}
	defer sess.Close()
	if err := s.send(stream, &dispatchv1.StreamAssignmentsResponse{Kind: &dispatchv1.StreamAssignmentsResponse_Started{Started: encodeStarted(sess.Started())}}); err != nil {
		return err
	}

	out := make(chan *dispatchv1.StreamAssignmentsResponse)
	ended := make(chan error, 2)
	// push hands a message to the sender; false when the stream is ending.
	push := func(m *dispatchv1.StreamAssignmentsResponse) bool {
		select {
		case out <- m:
			return true
		case <-ctx.Done():
			return false
		}
	}
	go func() { // the pump
		for {
			o, err := sess.Next(ctx)
			if err != nil {
				ended <- err
				return
			}
			if !push(encodeOutbound(o)) {
				return
			}
		}
	}()
	go func() { // the reader
		for {
			req, err := stream.Recv()
			// invalid is why the command req carries breaks its rules, when it does: it is answered
			// with a command_result rather than ending the stream.
			var invalid error
			if bad := (*grpcserver.InvalidMessageError)(nil); errors.As(err, &bad) {
				if r, ok := bad.Message.(*dispatchv1.StreamAssignmentsRequest); ok && withinCommand(r, bad.Err) {
					req, invalid, err = r, bad.Err, nil
				}
			}
			if errors.Is(err, io.EOF) {
				ended <- nil
				return
			}
			if err != nil {
				ended <- err
				return
			}
			if req.GetHello() == nil {
				if err := sess.Admit(); err != nil { // over the courier's budget of commands and acks
					ended <- err
					return
				}
			}
			switch {
			case req.GetHello() != nil:
				ended <- apperr.InvalidFields("hello was already sent", apperr.FieldViolation{Field: "hello", Description: "is only allowed in the first message"})
				return
			case req.GetAck() != nil:
				if err := sess.Ack(ctx, req.GetAck().GetCursor()); err != nil {
					ended <- err
					return
				}
			default:
				res, err := executeCommand(ctx, sess, req, invalid)
				if err != nil {
					ended <- err
					return
				}
				if ctx.Err() != nil {
					return
				}
				if !push(&dispatchv1.StreamAssignmentsResponse{Kind: &dispatchv1.StreamAssignmentsResponse_CommandResult{CommandResult: encodeCommandResult(res)}}) {
					return
				}
			}
		}
	}()
	for {
		select {
		case m := <-out:
			if err := s.send(stream, m); err != nil {
				return err
			}
		case err := <-ended:
			if denied := s.accountDisabled(stream, ctx); denied != nil {
				return denied
			}
			return err
		case <-ctx.Done():
			if denied := s.accountDisabled(stream, ctx); denied != nil {
				return denied
			}
			return ctx.Err()
		}
	}
}

// accountDisabled ends a session whose courier's account was suspended or deleted during it (the
// server cancelled ctx with a revocation caused by auth.ErrInactive) as the contract says: a drain with
// ACCOUNT_DISABLED, so that the app does not reconnect, then PermissionDenied (which the server's chain
// lets through instead of its Unauthenticated). It returns nil when ctx was not ended that way.
func (s *Server) accountDisabled(stream dispatchv1.DispatchService_StreamAssignmentsServer, ctx context.Context) error {
	if !errors.Is(auth.RevokedCause(ctx), auth.ErrInactive) {
		return nil
	}
	_ = s.send(stream, &dispatchv1.StreamAssignmentsResponse{Kind: &dispatchv1.StreamAssignmentsResponse_Drain{Drain: &dispatchv1.Drain{
		Reason: "the courier's account was suspended or deleted", Code: dispatchv1.DrainReason_DRAIN_REASON_ACCOUNT_DISABLED}}})
	return apperr.Errorf(apperr.PermissionDenied, "the courier's account is not active: do not reconnect")
}

// send stamps m with the server's clock and sends it.
func (s *Server) send(stream dispatchv1.DispatchService_StreamAssignmentsServer, m *dispatchv1.StreamAssignmentsResponse) error {
	m.ServerTime = timestamppb.New(s.now())
	return stream.Send(m)
}

func encodeStarted(st dispatch.SessionStarted) *dispatchv1.SessionStarted {
	out := &dispatchv1.SessionStarted{
		SessionId:          st.SessionID,
		CourierId:          st.CourierID,
		AcknowledgedCursor: st.AckedCursor,
		ServerTime:         timestamp(st.ServerTime),
		ActiveTasks:        encodeTasks(st.ActiveTasks),
		SnapshotCursor:     st.SnapshotCursor,
		CursorEpoch:        st.Epoch,
	}
	for _, n := range st.OpenOffers {
		out.OpenOffers = append(out.OpenOffers, &dispatchv1.OfferNotice{Offer: encodeOffer(n.Offer), Task: encodeTask(n.Task)})
	}
	return out
}

func encodeOutbound(o dispatch.Outbound) *dispatchv1.StreamAssignmentsResponse {
	out := &dispatchv1.StreamAssignmentsResponse{Cursor: o.Cursor}
	switch {
	case o.Offer != nil:
		out.Kind = &dispatchv1.StreamAssignmentsResponse_Offer{Offer: &dispatchv1.OfferNotice{Offer: encodeOffer(o.Offer.Offer), Task: encodeTask(o.Offer.Task)}}
	case o.OfferClosed != nil:
		out.Kind = &dispatchv1.StreamAssignmentsResponse_OfferClosed{OfferClosed: &dispatchv1.OfferClosed{Offer: encodeOffer(*o.OfferClosed)}}
	case o.Notice != nil:
		out.Kind = &dispatchv1.StreamAssignmentsResponse_Task{Task: &dispatchv1.TaskNotice{Reason: noticeReasons.Encode(o.Notice.Reason), Task: encodeTask(o.Notice.Task)}}
	case o.Drain != nil:
		out.Cursor = 0
		out.Kind = &dispatchv1.StreamAssignmentsResponse_Drain{Drain: &dispatchv1.Drain{
			GracePeriod: duration(o.Drain.Grace), Reason: o.Drain.Reason, Code: drainCodes.Encode(o.Drain.Code)}}
	}
	return out
}

// encodeCommandResult encodes a command's outcome; the error's code is the gRPC code of its domain code
// (grpcerr.GRPCCode), as a number.
func encodeCommandResult(r dispatch.CommandResult) *dispatchv1.CommandResult {
	out := &dispatchv1.CommandResult{CommandId: r.CommandID, Replayed: r.Replayed}
	if e := r.Err; e != nil {
		out.Error = &dispatchv1.CommandError{
			Code:       int32(grpcerr.GRPCCode(e.Code)),
			Message:    e.Message,
			RetryAfter: duration(e.RetryAfter),
			Reason:     e.Reason,
			Metadata:   encodeErrorMetadata(e.Metadata),
		}
	} else if r.Task != nil {
		out.Task = encodeTask(*r.Task)
	}
	return out
}

// encodeErrorMetadata encodes a command error's metadata. The domain names a missing proof's kind and
// stage by its own values, upper-cased ("BARCODE", "PICKUP", as stored with the command's outcome); the
// contract (CommandError, reason PROOF_REQUIRED) by their enum names ("PROOF_KIND_BARCODE",
// "TASK_STAGE_PICKUP"). Other keys, and values the codecs do not know, pass unchanged.
func encodeErrorMetadata(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := maps.Clone(m)
	if k := proofKinds.Encode(dispatch.ProofKind(strings.ToLower(m["kind"]))); k != dispatchv1.ProofKind_PROOF_KIND_UNSPECIFIED {
		out["kind"] = k.String()
	}
	if st := stages.Encode(dispatch.Stage(strings.ToLower(m["stage"]))); st != dispatchv1.TaskStage_TASK_STAGE_UNSPECIFIED {
		out["stage"] = st.String()
	}
	return out
}

// executeCommand executes the command req carries and returns its result. A command that breaks its
// rules (invalid: the platform's validation error, or else its decoding's) is not executed: the session
// refuses it (CourierSession.Refuse: INVALID_ARGUMENT, reason INVALID_COMMAND, with the message a unary
// call's status would carry, unless its command_id was used before). The error, which ends the stream,
// is set for a message that is not a command.
func executeCommand(ctx context.Context, sess *dispatch.CourierSession, req *dispatchv1.StreamAssignmentsRequest, invalid error) (dispatch.CommandResult, error) {
	cmd, err := decodeCommand(req)
	if invalid == nil {
		if err == nil {
			return sess.Execute(ctx, req.GetCommandId(), cmd), nil
		}
		if !withinCommand(req, err) {
			return dispatch.CommandResult{}, err
		}
		invalid = err
	}
	if req.GetKind() == nil {
		// A command this server does not know: decoding names those it does, where the contract's rule
		// only says that a kind is required.
		invalid = err
	}
	return sess.Refuse(ctx, req.GetCommandId(), cmd, apperr.MessageOf(invalid)), nil
}

// requestKind is the oneof of a session message's kinds: hello, ack, or a command.
var requestKind = new(dispatchv1.StreamAssignmentsRequest).ProtoReflect().Descriptor().Oneofs().ByName("kind")

// withinCommand reports whether err, an invalid session message's error, concerns only the command the
// message carries: the message is a command and every field violation names a field of it
// ("decline.reason"), none the message's command_id; or the message has a valid command_id and no kind
// this server knows (a command a newer app added, which protobuf keeps as an unknown field), and the
// only violation is that kind (its command_id passed the message's rule, which wants one exactly for a
// command). Such a command is refused on its own, with reason INVALID_COMMAND, and the stream stays open:
// ending it would make the app, which resends the command under the same command_id at every reconnect,
// end every session it opens.
func withinCommand(req *dispatchv1.StreamAssignmentsRequest, err error) bool {
	e := apperr.As(err)
	if e == nil || e.Code != apperr.Invalid || len(e.Violations) == 0 {
		return false
	}
	name := string(requestKind.Name()) // no kind: only the violation of the kind itself
	if f := req.ProtoReflect().WhichOneof(requestKind); f != nil {
		if f.Name() == "hello" || f.Name() == "ack" {
			return false
		}
		name = string(f.Name())
	}
	for _, v := range e.Violations {
		if v.Field != name && !strings.HasPrefix(v.Field, name+".") {
			return false
		}
	}
	return true
}

// decodeCommand decodes the command of a session message. With an error it returns what it could decode
// all the same (a field it could not read left zero), which CourierSession.Refuse compares with the
// command stored under the same command_id.
func decodeCommand(req *dispatchv1.StreamAssignmentsRequest) (dispatch.Command, error) {
	var d decoder
	var cmd dispatch.Command
	switch k := req.GetKind().(type) {
	case *dispatchv1.StreamAssignmentsRequest_Accept:
		cmd.Accept = &dispatch.AcceptCmd{OfferID: k.Accept.GetOfferId()}
	case *dispatchv1.StreamAssignmentsRequest_Decline:
		cmd.Decline = &dispatch.DeclineCmd{OfferID: k.Decline.GetOfferId(), Reason: declineReasons.Decode(k.Decline.GetReason()), Comment: k.Decline.GetComment()}
	case *dispatchv1.StreamAssignmentsRequest_PickedUp:
		p := k.PickedUp
		cmd.Pickup = &dispatch.PickupCmd{TaskID: p.GetTaskId(), UploadIDs: p.GetProofUploadIds(),
			Inline: d.inline("picked_up.inline_proofs", p.GetInlineProofs()), Location: d.optionalPoint(p.GetLocation()),
			OccurTime: d.timestamp("picked_up.occur_time", p.GetOccurTime())}
	case *dispatchv1.StreamAssignmentsRequest_Delivered:
		p := k.Delivered
		cmd.Deliver = &dispatch.DeliverCmd{TaskID: p.GetTaskId(), UploadIDs: p.GetProofUploadIds(),
			Inline: d.inline("delivered.inline_proofs", p.GetInlineProofs()), Location: d.optionalPoint(p.GetLocation()),
			OccurTime: d.timestamp("delivered.occur_time", p.GetOccurTime())}
	case *dispatchv1.StreamAssignmentsRequest_Failed:
		p := k.Failed
		cmd.Fail = &dispatch.FailCmd{TaskID: p.GetTaskId(), Reason: failureReasons.Decode(p.GetReason()), Comment: p.GetComment(),
			UploadIDs: p.GetProofUploadIds(), Location: d.optionalPoint(p.GetLocation()), OccurTime: d.timestamp("failed.occur_time", p.GetOccurTime())}
	case *dispatchv1.StreamAssignmentsRequest_Release:
		p := k.Release
		cmd.Release = &dispatch.ReleaseCmd{TaskID: p.GetTaskId(), Reason: releaseReasons.Decode(p.GetReason()), Comment: p.GetComment(),
			OccurTime: d.timestamp("release.occur_time", p.GetOccurTime())}
	default:
		d.add("kind", "must be a command this server knows: accept, decline, picked_up, delivered, failed or release")
	}
	return cmd, d.err()
}

func (d *decoder) inline(field string, in []*dispatchv1.InlineProof) []dispatch.InlineProof {
	var out []dispatch.InlineProof
	for i, p := range in {
		out = append(out, dispatch.InlineProof{
			Kind: proofKinds.Decode(p.GetKind()), Barcode: p.GetBarcode(), Code: p.GetCode(),
			CaptureTime:     d.timestamp(indexed(field, i)+".capture_time", p.GetCaptureTime()),
			CaptureLocation: d.optionalPoint(p.GetCaptureLocation()),
		})
	}
	return out
}

// encodeFix encodes a courier's position for WatchTask.
func encodeFix(f dispatch.Fix) *courierv1.LocationFix {
	out := &courierv1.LocationFix{Location: geoproto.LatLngProto(f.Location), RecordedAt: timestamp(f.Time), AccuracyMeters: f.Accuracy}
	if speed := f.Speed; speed > 0 {
		out.Speed = &speed
	}
	if heading := f.Heading; heading > 0 {
		out.Heading = &heading
	}
	return out
}
