package dispatch

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// Command is one command of a courier session; exactly one field is set.
type Command struct {
	Accept  *AcceptCmd  `json:",omitempty"`
	Decline *DeclineCmd `json:",omitempty"`
	Pickup  *PickupCmd  `json:",omitempty"`
	Deliver *DeliverCmd `json:",omitempty"`
	Fail    *FailCmd    `json:",omitempty"`
	Release *ReleaseCmd `json:",omitempty"`
}

// AcceptCmd accepts an open offer.
type AcceptCmd struct{ OfferID string }

// DeclineCmd declines an open offer.
type DeclineCmd struct {
	OfferID string
	Reason  DeclineReason
	Comment string
}

// InlineProof is a proof given in the command itself: a scanned barcode or the recipient's code.
type InlineProof struct {
	Kind            ProofKind
	Barcode, Code   string
	CaptureTime     time.Time
	CaptureLocation *geo.LatLng
}

// PickupCmd confirms the pickup of a held task.
type PickupCmd struct {
	TaskID    string
	UploadIDs []string
	Inline    []InlineProof
	Location  *geo.LatLng
	OccurTime time.Time
}

// DeliverCmd confirms the delivery of a picked-up task.
type DeliverCmd struct {
	TaskID    string
	UploadIDs []string
	Inline    []InlineProof
	Location  *geo.LatLng
	OccurTime time.Time
}

// FailCmd reports that a held task cannot be completed.
type FailCmd struct {
	TaskID    string
	Reason    FailureReason
	Comment   string
	UploadIDs []string
	Location  *geo.LatLng
	OccurTime time.Time
}

// ReleaseCmd hands an assigned task back before pickup.
type ReleaseCmd struct {
	TaskID    string
	Reason    ReleaseReason
	Comment   string
	OccurTime time.Time
}

// CommandResult is a command's outcome.
type CommandResult struct {
	CommandID string
	// Err is set when the command failed; Task when it succeeded (except for a decline).
	Err  *CommandError
	Task *Task
	// Replayed is true when the outcome is the stored one of an earlier attempt under the same id.
	Replayed bool
}

// Reasons of command errors (CommandError.Reason), the contract's machine-readable codes.
const (
	ReasonOfferExpired       = "OFFER_EXPIRED"
	ReasonOfferWithdrawn     = "OFFER_WITHDRAWN"
	ReasonOfferAnswered      = "OFFER_ALREADY_ANSWERED"
	ReasonProofRequired      = "PROOF_REQUIRED"
	ReasonCodeMismatch       = "CODE_MISMATCH"
	ReasonBarcodeMismatch    = "BARCODE_MISMATCH"
	ReasonTaskCancelled      = "TASK_CANCELLED"
	ReasonTaskState          = "TASK_STATE"
	ReasonNotHolder          = "NOT_HOLDER"
	ReasonUploadNotCommitted = "UPLOAD_NOT_COMMITTED"
	ReasonCommandIDReused    = "COMMAND_ID_REUSED"
	// ReasonInvalidCommand refuses a command that breaks the contract's rules for its fields (INVALID_ARGUMENT).
	ReasonInvalidCommand = "INVALID_COMMAND"
)

// MaxCodeAttempts is how many wrong delivery codes a task accepts; after them every code is refused. Nobody
// can give a task more attempts, so where the code is REQUIRED the courier reports the delivery as failed
// (failed takes no proofs) and a dispatcher arranges what happens to the parcel; the error says so.
const MaxCodeAttempts = 5

// maxOccurSkew is how far an offline command's event time may lie ahead of the server's clock.
const maxOccurSkew = 2 * time.Minute

// maxCaptureAge is how far from the server's clock a proof's capture time (by the device clock) is kept;
// captureFloor and captureCeiling bound it too. A time beyond them says the device's clock was wrong: it
// is not kept (the proof has no capture time) rather than refused, which would end the courier's session
// or upload and fail again at every retry.
const maxCaptureAge = 7 * 24 * time.Hour

var (
	captureFloor   = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	captureCeiling = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// captureTime returns a proof's capture time as it is kept: as stores keep times when it is plausible
// (within maxCaptureAge of now, from 2000 to 2100), the zero time otherwise.
func captureTime(t, now time.Time) time.Time {
	if t.IsZero() || t.Before(captureFloor) || !t.Before(captureCeiling) || t.Sub(now).Abs() > maxCaptureAge {
		return time.Time{}
	}
	return storedTime(t)
}

// Fingerprint identifies a command's content: a command resent under the same id must have the same one.
//
// It hashes the command's JSON with every time in UTC, so the same instant from another time zone is the
// same command. Fields added later must be omitempty, so that commands sent before a deploy keep their
// fingerprint after it.
func (c Command) Fingerprint() string {
	b, err := json.Marshal(c.utc())
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// utc returns a copy of c with its times in UTC.
func (c Command) utc() Command {
	inline := func(in []InlineProof) []InlineProof {
		out := append([]InlineProof(nil), in...)
		for i := range out {
			out[i].CaptureTime = out[i].CaptureTime.UTC()
		}
		return out
	}
	if c.Pickup != nil {
		p := *c.Pickup
		p.OccurTime, p.Inline = p.OccurTime.UTC(), inline(p.Inline)
		c.Pickup = &p
	}
	if c.Deliver != nil {
		d := *c.Deliver
		d.OccurTime, d.Inline = d.OccurTime.UTC(), inline(d.Inline)
		c.Deliver = &d
	}
	if c.Fail != nil {
		f := *c.Fail
		f.OccurTime = f.OccurTime.UTC()
		c.Fail = &f
	}
	if c.Release != nil {
		r := *c.Release
		r.OccurTime = r.OccurTime.UTC()
		c.Release = &r
	}
	return c
}

// kind names the command for logs.
func (c Command) kind() string {
	switch {
	case c.Accept != nil:
		return "accept"
	case c.Decline != nil:
		return "decline"
	case c.Pickup != nil:
		return "picked_up"
	case c.Deliver != nil:
		return "delivered"
	case c.Fail != nil:
		return "failed"
	case c.Release != nil:
		return "release"
	}
	return "none"
}

func cmdErr(code apperr.Code, reason, format string, args ...any) *CommandError {
	return &CommandError{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// errOf turns an error of the store or the closure into a command error. Internal details stay in the log.
func (s *Service) errOf(err error, what string) *CommandError {
	var ce *commandFailure
	if errors.As(err, &ce) {
		return ce.e
	}
	code := apperr.CodeOf(err)
	switch code {
	case apperr.NotFound, apperr.FailedPrecondition, apperr.Invalid, apperr.Aborted, apperr.Conflict:
		return &CommandError{Code: code, Message: apperr.MessageOf(err)}
	case apperr.Unavailable:
		return &CommandError{Code: code, Message: "dispatch cannot reach its database; retry", RetryAfter: time.Second}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The courier's stream went away mid-command (an app dropping off, a deadline): nothing is wrong with
		// dispatch, and the command, idempotent by its id, may be sent again.
		s.logger.Info("dispatch: command interrupted", "command", what, "error", err)
		return &CommandError{Code: apperr.Unavailable, Message: "the command was interrupted; send it again with the same id", RetryAfter: time.Second}
	}
	s.logger.Error("dispatch: command failed", "command", what, "error", err)
	return &CommandError{Code: apperr.Internal, Message: "internal error"}
}

// commandFailure carries a CommandError out of a closure.
type commandFailure struct{ e *CommandError }

func (f *commandFailure) Error() string { return f.e.Message }

func fail(e *CommandError) error { return &commandFailure{e: e} }

// final reports whether an outcome with code c is stored: retryable codes (Aborted, Unavailable,
// Internal) are not, so the command runs again when resent under the same id.
func final(c apperr.Code) bool {
	return c != apperr.Aborted && c != apperr.Unavailable && c != apperr.Internal
}

// Execute runs one command of courier courierID's session. Business errors come back in the result; the
// session stays open. A final outcome is stored under commandID, so that the command is applied once.
func (s *Service) Execute(ctx context.Context, courierID, commandID string, cmd Command) CommandResult {
	res, _ := s.run(ctx, courierID, commandID, cmd)
	s.storeOutcome(ctx, courierID, commandID, cmd, res)
	return res
}

// run runs cmd and returns its result, storing nothing but what its own transaction stores. recorded
// reports that the transaction stored the outcome under commandID (an offer's answer that changed the
// task): the command's record did not exist before, or the transaction would have failed on it.
func (s *Service) run(ctx context.Context, courierID, commandID string, cmd Command) (res CommandResult, recorded bool) {
	res = CommandResult{CommandID: commandID}
	t, recorded, err := s.execute(ctx, courierID, commandID, cmd)
	if err != nil {
		res.Err = s.errOf(err, cmd.kind())
		return res, false
	}
	if t != nil {
		v := t.For(auth.FromContext(ctx), courierID, ViewFull)
		res.Task = &v
	}
	return res, recorded
}

// storeOutcome stores res under commandID when it is a final failure (a success is stored by its own
// transaction).
func (s *Service) storeOutcome(ctx context.Context, courierID, commandID string, cmd Command, res CommandResult) {
	if res.Err == nil || !final(res.Err.Code) || commandID == "" {
		return
	}
	rec := CommandRecord{CourierID: courierID, CommandID: commandID, Fingerprint: cmd.Fingerprint(), Err: res.Err, CreateTime: storedTime(s.now())}
	if err := s.store.SaveCommand(ctx, rec); err != nil {
		s.logger.Warn("dispatch: storing a command outcome failed", "command", cmd.kind(), "error", err)
	}
}

// execute runs cmd; recorded is true when the command changed its task and recorded itself in that
// transaction, which only an offer's answer reports.
func (s *Service) execute(ctx context.Context, courierID, commandID string, cmd Command) (t *Task, recorded bool, err error) {
	record := func(ch *Change, taskID string, e *CommandError) {
		if commandID != "" {
			ch.Command = &CommandRecord{CourierID: courierID, CommandID: commandID, Fingerprint: cmd.Fingerprint(), TaskID: taskID, Err: e, CreateTime: storedTime(s.now())}
		}
	}
	switch {
	case cmd.Accept != nil:
		t, changed, err := s.answerOffer(ctx, courierID, cmd.Accept.OfferID, true, nil, record)
		return t, changed && commandID != "", err
	case cmd.Decline != nil:
		_, changed, err := s.answerOffer(ctx, courierID, cmd.Decline.OfferID, false, cmd.Decline, record)
		return nil, changed && commandID != "", err
	case cmd.Pickup != nil:
		c := cmd.Pickup
		t, err = s.progress(ctx, courierID, c.TaskID, StatePickedUp, StagePickup, c.UploadIDs, c.Inline, c.OccurTime, "", "", record)
	case cmd.Deliver != nil:
		c := cmd.Deliver
		t, err = s.progress(ctx, courierID, c.TaskID, StateDelivered, StageDropoff, c.UploadIDs, c.Inline, c.OccurTime, "", "", record)
	case cmd.Fail != nil:
		c := cmd.Fail
		t, err = s.progress(ctx, courierID, c.TaskID, StateFailed, "", c.UploadIDs, nil, c.OccurTime, c.Reason, c.Comment, record)
	case cmd.Release != nil:
		t, err = s.release(ctx, courierID, cmd.Release, record)
	default:
		err = apperr.Errorf(apperr.Invalid, "empty command")
	}
	return t, false, err
}

// occurTime returns when an offline command happened: its event time when given and plausible (not
// ahead of the server's clock, not before floor), the server's time otherwise.
func (s *Service) occurTime(occur, floor time.Time) time.Time {
	now := s.now()
	if occur.IsZero() || occur.After(now.Add(maxOccurSkew)) {
		return now
	}
	if occur.After(now) {
		occur = now
	}
	if occur.Before(floor) {
		return floor
	}
	return occur
}

type recorder func(ch *Change, taskID string, e *CommandError)

// answerOffer accepts or declines courierID's offer offerID; changed reports that it wrote the task (and
// so the command's record), not found it answered already.
func (s *Service) answerOffer(ctx context.Context, courierID, offerID string, accept bool, decline *DeclineCmd, record recorder) (_ *Task, changed bool, _ error) {
	var v violations
	offerID = v.id("offer_id", offerID)
	if decline != nil {
		switch decline.Reason {
		case DeclineTooFar, DeclineTooBusy, DeclineParcelTooLarge, DeclineShiftEnding, DeclineUnsafeArea, DeclineOther:
		default:
			v.add("decline.reason", "must be a defined decline reason")
		}
		v.text("decline.comment", decline.Comment, maxComment, false, false)
	}
	if err := v.err(); err != nil {
		return nil, false, err
	}
	p := auth.FromContext(ctx)
	var accepted time.Duration
	var unchanged Task
	// One transaction finds the task by the offer and locks it: the offer's courier never changes, so
	// checking it under the lock is as good as before it.
	t, err := s.store.UpdateTaskByOffer(ctx, offerID, func(t Task) (Change, error) {
		now := s.now()
		o := t.Offer(offerID)
		if o == nil || o.CourierID != courierID {
			return Change{}, fail(cmdErr(apperr.NotFound, "", "offer %s not found", offerID))
		}
		switch {
		case o.State == OfferAccepted && accept && t.State.Held() && t.CourierID == courierID,
			o.State == OfferDeclined && !accept:
			unchanged = t
			return Change{}, errNoChange // already applied: succeeds again
		case o.State == OfferAccepted && accept: // accepted, but the task is no longer the courier's
			if t.State == StateCancelled {
				return Change{}, fail(cmdErr(apperr.FailedPrecondition, ReasonTaskCancelled, "task %s was cancelled", t.ID))
			}
			return Change{}, fail(cmdErr(apperr.FailedPrecondition, ReasonNotHolder, "task %s is no longer yours", t.ID))
		case o.State == OfferExpired:
			return Change{}, fail(cmdErr(apperr.FailedPrecondition, ReasonOfferExpired, "offer %s expired at %s", o.ID, o.ExpireTime.Format(time.RFC3339)))
		case o.State == OfferWithdrawn:
			reason := ReasonOfferWithdrawn
			if t.State == StateCancelled {
				reason = ReasonTaskCancelled
			}
			return Change{}, fail(cmdErr(apperr.FailedPrecondition, reason, "offer %s was withdrawn", o.ID))
		case o.State != OfferOpen || t.CurrentOffer() == nil || t.CurrentOffer().ID != o.ID:
			return Change{}, fail(cmdErr(apperr.FailedPrecondition, ReasonOfferAnswered, "offer %s was already answered", o.ID))
		case now.After(o.ExpireTime.Add(s.opts.OfferGrace)):
			return Change{}, fail(cmdErr(apperr.FailedPrecondition, ReasonOfferExpired, "offer %s expired at %s", o.ID, o.ExpireTime.Format(time.RFC3339)))
		}
		var ch Change
		if accept {
			t.closeOffer(OfferAccepted, now)
			if err := t.transition(StateChange{State: StateAssigned, At: now, Actor: ActorCourier, ActorUserID: p.Subject, CourierID: courierID, OfferID: o.ID}); err != nil {
				return Change{}, err
			}
			ch.Jobs = []Job{{Kind: JobClaim, CourierID: courierID, TaskID: t.ID, ExpectedRelease: expectedRelease(t, now)}}
			accepted = now.Sub(t.CreateTime)
		} else {
			o := t.closeOffer(OfferDeclined, now)
			o.DeclineReason, o.Comment = decline.Reason, decline.Comment
			t.Exclude(courierID, ExcludedDeclined)
			if err := t.transition(StateChange{State: StatePending, At: now, Actor: ActorCourier, ActorUserID: p.Subject, CourierID: courierID, OfferID: o.ID, Comment: "offer declined: " + string(decline.Reason)}); err != nil {
				return Change{}, err
			}
		}
		record(&ch, t.ID, nil)
		ch.Task = t
		return ch, nil
	})
	switch {
	case errors.Is(err, errNoChange):
		t = unchanged
	case apperr.CodeOf(err) == apperr.NotFound: // the store's: no task has the offer
		return nil, false, fail(cmdErr(apperr.NotFound, "", "offer %s not found", offerID))
	case err != nil:
		return nil, false, err
	default:
		changed = true
		if accept {
			s.metrics.OfferAnswered(OfferAccepted)
			s.metrics.Assigned(accepted)
		} else {
			s.metrics.OfferAnswered(OfferDeclined)
			s.courierFreed() // and the task goes to its next candidate
		}
	}
	return &t, changed, nil
}

// progress moves a task courierID holds to PICKED_UP, DELIVERED or FAILED, checking the proofs the task
// requires at that stage.
func (s *Service) progress(ctx context.Context, courierID, taskID string, to State, stage Stage, uploadIDs []string, inline []InlineProof, occur time.Time, reason FailureReason, comment string, record recorder) (*Task, error) {
	var v violations
	taskID = v.id("task_id", taskID)
	for i, id := range uploadIDs {
		uploadIDs[i] = v.id(fmt.Sprintf("proof_upload_ids[%d]", i), id)
	}
	if to == StateFailed {
		switch reason {
		case FailureRecipientUnavailable, FailureRecipientRefused, FailureAddressNotFound, FailureParcelNotReady, FailureParcelDamaged, FailureCourierUnable, FailureUnsafe, FailureOther:
		default:
			v.add("failed.reason", "must be a defined failure reason")
		}
		v.text("failed.comment", comment, maxComment, false, false)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	cur, err := s.heldTask(ctx, courierID, taskID)
	if err != nil {
		return nil, err
	}
	if to == StateFailed {
		stage = StageDropoff
		if cur.State == StateAssigned {
			stage = StagePickup
		}
	}
	var proofs []Proof
	if len(uploadIDs) > 0 {
		var ce *CommandError
		if proofs, ce = s.proofsFor(ctx, cur, courierID, stage, uploadIDs); ce != nil {
			return nil, fail(ce)
		}
	}
	p := auth.FromContext(ctx)
	var codeErr *CommandError
	var unchanged Task
	t, err := s.store.UpdateTask(ctx, taskID, func(t Task) (Change, error) {
		if t.CourierID != courierID || !(t.State.Held() || t.State == to) {
			return Change{}, s.notHeld(t, courierID)
		}
		if t.State == to {
			unchanged = t
			return Change{}, errNoChange // already applied
		}
		if !CanTransition(t.State, to) {
			return Change{}, fail(cmdErr(apperr.FailedPrecondition, ReasonTaskState, "task %s is %s and cannot become %s", t.ID, t.State, to))
		}
		for _, pr := range proofs {
			// proofsFor lets an upload it marked attached pass again, so that a command it marked it for
			// and that then failed can be resent; one the task already holds is attached for good.
			if t.HasProof(pr.UploadID) {
				return Change{}, fail(&CommandError{Code: apperr.FailedPrecondition, Reason: ReasonUploadNotCommitted,
					Message:  fmt.Sprintf("upload %s is already attached to task %s", pr.UploadID, t.ID),
					Metadata: map[string]string{"upload_id": pr.UploadID}})
			}
		}
		now := s.now()
		var ch Change
		if to != StateFailed {
			attempts := t.CodeAttempts
			if e := checkProofs(&t, stage, proofs, inline, now); e != nil {
				if e.Reason != ReasonCodeMismatch || t.CodeAttempts == attempts {
					// Only a counted wrong code changes the task. A code refused without being counted
					// (at a stage that takes none, or once no attempt is left) writes nothing, so the
					// task keeps its etag and watchers are not sent it again.
					return Change{}, fail(e)
				}
				// A wrong code is counted, so the attempts limit holds; the task stays as it is.
				codeErr = e
				record(&ch, t.ID, e)
				ch.Task = t
				return ch, nil
			}
		}
		floor := t.AssignTime // the step before: the assignment, or the pickup once picked up
		if t.State == StatePickedUp {
			floor = t.PickupTime
		}
		at := s.occurTime(occur, floor)
		t.Proofs = append(t.Proofs, proofs...)
		for _, ip := range inline {
			if ip.Kind == ProofBarcode {
				t.Proofs = append(t.Proofs, Proof{Kind: ProofBarcode, Stage: stage, Value: ip.Barcode, CaptureTime: captureTime(ip.CaptureTime, now), CaptureLocation: ip.CaptureLocation, CreateTime: storedTime(now)})
			} else if ip.Kind == ProofCode {
				t.Proofs = append(t.Proofs, Proof{Kind: ProofCode, Stage: stage, CaptureTime: captureTime(ip.CaptureTime, now), CaptureLocation: ip.CaptureLocation, CreateTime: storedTime(now)})
			}
		}
		if err := t.transition(StateChange{State: to, At: at, Actor: ActorCourier, ActorUserID: p.Subject, CourierID: courierID, Comment: comment}); err != nil {
			return Change{}, err
		}
		t.UpdateTime = storedTime(now)
		if to == StateFailed {
			t.FailureReason = reason
		}
		if to.Final() {
			ch.Jobs = []Job{{Kind: JobRelease, CourierID: courierID, TaskID: t.ID, Final: true}}
		}
		record(&ch, t.ID, nil)
		ch.Task = t
		return ch, nil
	})
	switch {
	case errors.Is(err, errNoChange):
		t = unchanged
	case err != nil:
		return nil, err
	case codeErr != nil:
		return nil, fail(codeErr)
	}
	return &t, nil
}

// heldTask returns task id when courierID holds it or held it; NotFound otherwise.
func (s *Service) heldTask(ctx context.Context, courierID, id string) (Task, error) {
	t, err := s.store.GetTask(ctx, id)
	if err != nil {
		if apperr.CodeOf(err) == apperr.NotFound {
			return Task{}, fail(cmdErr(apperr.NotFound, "", "task %s not found", id))
		}
		return Task{}, fmt.Errorf("get task %s: %w", id, err)
	}
	if t.CourierID != courierID {
		for _, h := range t.History {
			if h.CourierID == courierID && h.State.Held() {
				return t, nil
			}
		}
		return Task{}, fail(cmdErr(apperr.NotFound, "", "task %s not found", id))
	}
	return t, nil
}

// notHeld explains why courierID cannot act on t.
func (s *Service) notHeld(t Task, courierID string) error {
	switch {
	case t.State == StateCancelled:
		return fail(cmdErr(apperr.FailedPrecondition, ReasonTaskCancelled, "task %s was cancelled", t.ID))
	case t.CourierID != courierID:
		return fail(cmdErr(apperr.FailedPrecondition, ReasonNotHolder, "task %s is no longer yours", t.ID))
	}
	return fail(cmdErr(apperr.FailedPrecondition, ReasonTaskState, "task %s is %s", t.ID, t.State))
}

// checkProofs checks the proofs a stage requires: each REQUIRED photo or signature among the uploads,
// a REQUIRED barcode scanned and equal to the parcel's, a REQUIRED code equal to the delivery code. A wrong
// barcode or code is refused even when optional. Wrong codes are counted in t. A code given at a stage that
// takes none (the pickup, or a task without a delivery code) is refused with no attempt left there, and
// not counted.
func checkProofs(t *Task, stage Stage, uploads []Proof, inline []InlineProof, now time.Time) *CommandError {
	has := func(k ProofKind) bool {
		for _, p := range uploads {
			if p.Kind == k {
				return true
			}
		}
		for _, p := range inline {
			if p.Kind == k {
				return true
			}
		}
		return false
	}
	for _, ip := range inline {
		switch ip.Kind {
		case ProofBarcode:
			if t.ParcelBarcode == "" || ip.Barcode != t.ParcelBarcode {
				return cmdErr(apperr.FailedPrecondition, ReasonBarcodeMismatch, "the scanned barcode does not match the parcel's")
			}
		case ProofCode:
			if stage != StageDropoff || t.DeliveryCode == "" {
				// No code is accepted at this stage, so none is left here; not counted, and never compared.
				e := cmdErr(apperr.FailedPrecondition, ReasonCodeMismatch, "this task takes no delivery code here")
				e.Metadata = map[string]string{"attempts_left": "0"}
				return e
			}
			if t.CodeAttempts >= MaxCodeAttempts {
				e := cmdErr(apperr.FailedPrecondition, ReasonCodeMismatch, "too many wrong codes: the task takes no more; if the code is required, report the delivery as failed")
				e.Metadata = map[string]string{"attempts_left": "0"}
				return e
			}
			if subtle.ConstantTimeCompare([]byte(ip.Code), []byte(t.DeliveryCode)) != 1 {
				t.CodeAttempts++
				t.UpdateTime = storedTime(now)
				e := cmdErr(apperr.FailedPrecondition, ReasonCodeMismatch, "the code does not match")
				e.Metadata = map[string]string{"attempts_left": strconv.Itoa(MaxCodeAttempts - t.CodeAttempts)}
				return e
			}
		}
	}
	for _, r := range t.ProofRequirements {
		if r.Stage != stage || r.Policy != ProofRequired || has(r.Kind) {
			continue
		}
		e := cmdErr(apperr.FailedPrecondition, ReasonProofRequired, "a %s proof is required at the %s", r.Kind, stage)
		e.Metadata = map[string]string{"kind": strings.ToUpper(string(r.Kind)), "stage": strings.ToUpper(string(stage))}
		return e
	}
	return nil
}

// release hands an ASSIGNED task back: it becomes PENDING and is never offered to this courier again.
func (s *Service) release(ctx context.Context, courierID string, c *ReleaseCmd, record recorder) (*Task, error) {
	var v violations
	taskID := v.id("release.task_id", c.TaskID)
	switch c.Reason {
	case ReleaseParcelNotReady, ReleaseCourierUnable, ReleaseVehicleProblem, ReleaseTooFar, ReleaseOther:
	default:
		v.add("release.reason", "must be a defined release reason")
	}
	v.text("release.comment", c.Comment, maxComment, false, false)
	if err := v.err(); err != nil {
		return nil, err
	}
	if _, err := s.heldTask(ctx, courierID, taskID); err != nil {
		return nil, err
	}
	p := auth.FromContext(ctx)
	t, err := s.store.UpdateTask(ctx, taskID, func(t Task) (Change, error) {
		if t.CourierID != courierID || t.State != StateAssigned {
			if t.CourierID == courierID && t.State == StatePickedUp {
				return Change{}, fail(cmdErr(apperr.FailedPrecondition, ReasonTaskState, "task %s was picked up: report a failure instead", t.ID))
			}
			if t.State != StateCancelled && t.CourierID != courierID {
				return Change{}, fail(cmdErr(apperr.FailedPrecondition, ReasonNotHolder, "task %s is not yours (released already?)", t.ID))
			}
			return Change{}, s.notHeld(t, courierID)
		}
		now := s.now()
		comment := "handed back: " + string(c.Reason)
		if c.Comment != "" {
			comment += ": " + c.Comment
		}
		// The hand-back is recorded when the courier decided (an offline command's event time); the
		// search starts now.
		at := s.occurTime(c.OccurTime, t.AssignTime)
		if err := t.transition(StateChange{State: StatePending, At: at, Actor: ActorCourier, ActorUserID: p.Subject, CourierID: courierID, Comment: comment}); err != nil {
			return Change{}, err
		}
		t.UpdateTime = storedTime(now)
		t.Exclude(courierID, ExcludedDeclined)
		t.SearchStart, t.Searches = storedTime(now), 0
		ch := Change{Jobs: []Job{{Kind: JobRelease, CourierID: courierID, TaskID: t.ID}}}
		record(&ch, t.ID, nil)
		ch.Task = t
		return ch, nil
	})
	if err != nil {
		return nil, err
	}
	s.kick()
	return &t, nil
}
