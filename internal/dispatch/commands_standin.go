package dispatch

// STAND-IN: minimal private versions of what the coordinator writes in tasks.go and commands.go, so that
// the session helper's branch builds and its tests run. Delete this file when main has those files: the
// names and signatures below are those of dispatch-api.md.

import (
	"context"
	"time"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// View says how much of a task is returned.
type View string

// The views.
const (
	ViewBasic View = "basic"
	ViewFull  View = "full"
)

// Command is one courier command of a session; exactly one field is set.
type Command struct {
	Accept  *AcceptCmd
	Decline *DeclineCmd
	Pickup  *PickupCmd
	Deliver *DeliverCmd
	Fail    *FailCmd
	Release *ReleaseCmd
}

// AcceptCmd accepts an open offer.
type AcceptCmd struct{ OfferID string }

// DeclineCmd declines an open offer.
type DeclineCmd struct {
	OfferID string
	Reason  DeclineReason
	Comment string
}

// InlineProof is a proof sent with a command (a barcode or a code).
type InlineProof struct {
	Kind            ProofKind
	Barcode, Code   string
	CaptureTime     time.Time
	CaptureLocation *geo.LatLng
}

// PickupCmd confirms a pickup.
type PickupCmd struct {
	TaskID    string
	UploadIDs []string
	Inline    []InlineProof
	Location  *geo.LatLng
	OccurTime time.Time
}

// DeliverCmd confirms a delivery.
type DeliverCmd struct {
	TaskID    string
	UploadIDs []string
	Inline    []InlineProof
	Location  *geo.LatLng
	OccurTime time.Time
}

// FailCmd reports a failure.
type FailCmd struct {
	TaskID    string
	Reason    FailureReason
	Comment   string
	UploadIDs []string
	Location  *geo.LatLng
	OccurTime time.Time
}

// ReleaseCmd hands a task back.
type ReleaseCmd struct {
	TaskID    string
	Reason    ReleaseReason
	Comment   string
	OccurTime time.Time
}

// CommandResult is a command's outcome.
type CommandResult struct {
	CommandID string
	Err       *CommandError
	Task      *Task
	Replayed  bool
}

// For returns t as p may see it (stand-in: couriers not holding it lose contacts, nobody else's view is
// reduced but by view).
func (t Task) For(p auth.Principal, courierID string, view View) Task {
	c := t.Clone()
	if view == ViewBasic {
		c.History, c.Proofs = nil, nil
	}
	if p.HasRole(auth.RoleCourier) && !p.HasRole(auth.RoleDispatcher) && !p.HasRole(auth.RoleAdmin) {
		c.DeliveryCode = ""
		if !(c.State.Held() && c.CourierID == courierID) {
			c.Pickup.Contact, c.Dropoff.Contact = Contact{}, Contact{}
			c.Pickup.Instructions, c.Dropoff.Instructions = "", ""
		}
	}
	return c
}

// callerCourier returns the courier id of a courier caller.
func (s *Service) callerCourier(ctx context.Context) (string, error) {
	p := auth.FromContext(ctx)
	if !p.HasRole(auth.RoleCourier) {
		return "", apperr.Errorf(apperr.PermissionDenied, "only couriers have a courier profile")
	}
	return s.couriers.CourierOfUser(ctx, p.Subject)
}

// visibleTask returns the task with id when the caller may see it, NotFound otherwise.
func (s *Service) visibleTask(ctx context.Context, id string) (Task, error) {
	p := auth.FromContext(ctx)
	t, err := s.store.GetTask(ctx, id)
	if err != nil {
		return Task{}, err
	}
	courierID := ""
	if p.HasRole(auth.RoleCourier) {
		if courierID, err = s.callerCourier(ctx); err != nil {
			return Task{}, err
		}
	}
	if !canSee(p, t, courierID) {
		return Task{}, apperr.Errorf(apperr.NotFound, "no task %s", id)
	}
	return t, nil
}

// canSee reports whether p may see t.
func canSee(p auth.Principal, t Task, courierID string) bool {
	switch {
	case p.Kind == auth.Service, p.HasRole(auth.RoleDispatcher), p.HasRole(auth.RoleAdmin):
		return true
	case p.HasRole(auth.RoleCustomer) && t.CustomerID == p.Subject:
		return true
	case courierID != "":
		if t.CourierID == courierID {
			return true
		}
		for _, o := range t.Offers {
			if o.CourierID == courierID {
				return true
			}
		}
	}
	return false
}

// Execute runs a courier command (stand-in: accept only).
func (s *Service) Execute(ctx context.Context, courierID, commandID string, cmd Command) CommandResult {
	res := CommandResult{CommandID: commandID}
	if cmd.Accept == nil {
		res.Err = &CommandError{Code: apperr.Invalid, Message: "stand-in executes accept only"}
		return res
	}
	rec := CommandRecord{CourierID: courierID, CommandID: commandID, Fingerprint: cmd.Fingerprint(),
		CreateTime: storedTime(s.now())}
	t, err := s.store.TaskByOffer(ctx, cmd.Accept.OfferID)
	if err != nil {
		res.Err = &CommandError{Code: apperr.NotFound, Message: "no such offer"}
		rec.Err = res.Err
		if err := s.store.SaveCommand(ctx, rec); err != nil {
			s.logger.Warn("save command", "err", err)
		}
		return res
	}
	rec.TaskID = t.ID
	t, err = s.store.UpdateTask(ctx, t.ID, func(t Task) (Change, error) {
		o := t.CurrentOffer()
		if o == nil || o.ID != cmd.Accept.OfferID || o.CourierID != courierID {
			return Change{}, apperr.Errorf(apperr.FailedPrecondition, "offer %s is not open", cmd.Accept.OfferID)
		}
		o.State, o.AnswerTime = OfferAccepted, storedTime(s.now())
		t.State, t.CourierID, t.AssignTime = StateAssigned, courierID, storedTime(s.now())
		return Change{Task: t, Command: &rec}, nil
	})
	if err != nil {
		res.Err = &CommandError{Code: apperr.CodeOf(err), Message: apperr.MessageOf(err), Reason: "OFFER_CLOSED"}
		rec.Err = res.Err
		if err := s.store.SaveCommand(ctx, rec); err != nil {
			s.logger.Warn("save command", "err", err)
		}
		return res
	}
	p := auth.FromContext(ctx)
	out := t.For(p, courierID, ViewFull)
	res.Task = &out
	return res
}
