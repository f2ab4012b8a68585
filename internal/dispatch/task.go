// Package dispatch is the domain of lastmile's dispatch service: delivery tasks and their lifecycle, the
// assignment engine that offers each task to the best available courier, the courier's session (offers,
// commands, deliveries that survive disconnects), live tracking and proof of delivery. It knows nothing
// about Protobuf, SQL or gRPC: the transport adapter (grpcapi), the stores (sqlstore, sqlite, postgres)
// and the clients of the courier and route services depend on it, never the other way round.
//
// # One transaction per transition
//
// Every change to a task is a closure the Service hands to Store.UpdateTask: the store locks the task,
// runs the closure on the current task and writes what it returns (a Change) in one transaction: the
// task itself (with its version bumped, which is the etag), the deliveries to couriers' session logs,
// the assignment decision, the stored command result, the durable jobs (ClaimCourier, ReleaseCourier)
// and an event on the service's event feed. The rules (which transitions are legal, who may do what)
// are this package's; no store repeats them, and two replicas cannot break them.
//
// # Work queue
//
// A task the engine must look at carries a due time: PENDING tasks are due at once (and again after a
// back-off while no courier is found), OFFERED tasks when their offer expires. Each replica's worker
// leases due tasks from the store (highest priority, then oldest, first; a lease taken over once its
// holder stops renewing it), so each task is worked by one replica at a time and an offer's deadline holds
// even if the process that made the offer dies. A process alone on its store (SQLite) ends the leases it
// finds at start, which only a process that ended can have left (endDeadLeases).
package dispatch

import (
	"slices"
	"time"

	"lastmile/internal/geo"
)

// State is where a task is in its lifecycle.
type State string

// The states. Delivered, cancelled and failed are final.
const (
	StatePending      State = "pending"
	StateOffered      State = "offered"
	StateAssigned     State = "assigned"
	StatePickedUp     State = "picked_up"
	StateDelivered    State = "delivered"
	StateCancelled    State = "cancelled"
	StateFailed       State = "failed"
	StateUnassignable State = "unassignable"
)

// States lists every state, in the order of the API's enum.
var States = []State{StatePending, StateOffered, StateAssigned, StatePickedUp, StateDelivered, StateCancelled, StateFailed, StateUnassignable}

// Final reports whether s is a final state: nothing changes a task once it is in one.
func (s State) Final() bool {
	return s == StateDelivered || s == StateCancelled || s == StateFailed
}

// HeldStates lists the states in which a courier holds a task: ASSIGNED and PICKED_UP. Stores that
// select held tasks in SQL name these states, never their own list.
var HeldStates = []State{StateAssigned, StatePickedUp}

// Held reports whether a courier holds a task in state s (one of HeldStates).
func (s State) Held() bool { return slices.Contains(HeldStates, s) }

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// Priority is how urgently a task should be assigned; higher goes first.
type Priority string

// The priorities, lowest first.
const (
	PriorityLow    Priority = "low"
	PriorityNormal Priority = "normal"
	PriorityHigh   Priority = "high"
	PriorityUrgent Priority = "urgent"
)

// Rank orders priorities: 1 for low up to 4 for urgent, 0 for an undefined value. Stores keep it to order
// the work queue.
func (p Priority) Rank() int {
	switch p {
	case PriorityLow:
		return 1
	case PriorityNormal:
		return 2
	case PriorityHigh:
		return 3
	case PriorityUrgent:
		return 4
	}
	return 0
}

// Size is how big a parcel is; it decides which transport modes may carry it.
type Size string

// The parcel sizes.
const (
	SizeSmall      Size = "small"
	SizeMedium     Size = "medium"
	SizeLarge      Size = "large"
	SizeExtraLarge Size = "extra_large"
)

// Carries reports whether a courier travelling by mode may carry a parcel of size s: small fits every
// mode, medium every mode but walking, large needs a car or a van, extra large a van.
func (s Size) Carries(mode geo.TransportMode) bool {
	switch s {
	case SizeSmall:
		return mode.Valid()
	case SizeMedium:
		return mode.Valid() && mode != geo.Walking
	case SizeLarge:
		return mode == geo.Car || mode == geo.Van
	case SizeExtraLarge:
		return mode == geo.Van
	}
	return false
}

// Modes returns the transport modes that may carry a parcel of size s, in geo.Modes order.
func (s Size) Modes() []geo.TransportMode {
	var out []geo.TransportMode
	for _, m := range geo.Modes {
		if s.Carries(m) {
			out = append(out, m)
		}
	}
	return out
}

// Window is a span of time, start inclusive and end exclusive.
type Window struct {
	Start, End time.Time
}

// Contact is a person to ask for at a stop.
type Contact struct {
	Name, Phone string
}

// Stop is a place a courier visits: a task's pickup or dropoff.
type Stop struct {
	Location geo.LatLng
	Address  string
	// Window is when the stop may be visited; nil when at any time.
	Window *Window
	// Contact and Instructions are withheld from a courier until they hold the task (Task.ForCourier).
	Contact      Contact
	Instructions string
}

// Actor is who caused a change to a task.
type Actor string

// The actors.
const (
	ActorSystem     Actor = "system"
	ActorCustomer   Actor = "customer"
	ActorCourier    Actor = "courier"
	ActorDispatcher Actor = "dispatcher"
)

// StateChange records one transition of a task.
type StateChange struct {
	State State
	At    time.Time
	Actor Actor
	// ActorUserID is the user who caused it (a customer, dispatcher or the courier's user); empty for the
	// system.
	ActorUserID string
	// CourierID is the courier the transition concerns: the one offered the task, the new holder, or the
	// holder that picked up, delivered, failed or handed it back.
	CourierID string
	// OfferID is the offer the transition concerns (OFFERED, and ASSIGNED by acceptance).
	OfferID string
	Comment string
}

// CancelReason is why a task was cancelled.
type CancelReason string

// The cancel reasons.
const (
	CancelCustomerRequest  CancelReason = "customer_request"
	CancelDuplicate        CancelReason = "duplicate"
	CancelIncorrectDetails CancelReason = "incorrect_details"
	CancelNoCourier        CancelReason = "no_courier"
	CancelOther            CancelReason = "other"
)

// FailureReason is why a courier could not complete a task.
type FailureReason string

// The failure reasons.
const (
	FailureRecipientUnavailable FailureReason = "recipient_unavailable"
	FailureRecipientRefused     FailureReason = "recipient_refused"
	FailureAddressNotFound      FailureReason = "address_not_found"
	FailureParcelNotReady       FailureReason = "parcel_not_ready"
	FailureParcelDamaged        FailureReason = "parcel_damaged"
	FailureCourierUnable        FailureReason = "courier_unable"
	FailureUnsafe               FailureReason = "unsafe"
	FailureOther                FailureReason = "other"
)

// ReleaseReason is why a courier hands a task back before pickup.
type ReleaseReason string

// The release reasons.
const (
	ReleaseParcelNotReady ReleaseReason = "parcel_not_ready"
	ReleaseCourierUnable  ReleaseReason = "courier_unable"
	ReleaseVehicleProblem ReleaseReason = "vehicle_problem"
	ReleaseTooFar         ReleaseReason = "too_far"
	ReleaseOther          ReleaseReason = "other"
)

// DeclineReason is why a courier declined an offer.
type DeclineReason string

// The decline reasons.
const (
	DeclineTooFar         DeclineReason = "too_far"
	DeclineTooBusy        DeclineReason = "too_busy"
	DeclineParcelTooLarge DeclineReason = "parcel_too_large"
	DeclineShiftEnding    DeclineReason = "shift_ending"
	DeclineUnsafeArea     DeclineReason = "unsafe_area"
	DeclineOther          DeclineReason = "other"
)

// OfferState is where an offer is in its life.
type OfferState string

// The offer states. Only open offers change.
const (
	OfferOpen      OfferState = "open"
	OfferAccepted  OfferState = "accepted"
	OfferDeclined  OfferState = "declined"
	OfferExpired   OfferState = "expired"
	OfferWithdrawn OfferState = "withdrawn"
)

// Offer is the proposal of a task to one courier.
type Offer struct {
	ID         string
	TaskID     string
	CourierID  string
	State      OfferState
	CreateTime time.Time
	// ExpireTime is the deadline: an offer not accepted by then expires (judged by the server's clock,
	// with Options.OfferGrace of grace for answers in flight).
	ExpireTime time.Time
	// ResponseTimeout is ExpireTime - CreateTime, sent so that apps need not trust their clock.
	ResponseTimeout time.Duration
	PickupETA       time.Duration
	PickupDistance  float64
	// DecisionID is the decision that produced the offer; empty for none.
	DecisionID string
	// AnswerTime is when the offer left OfferOpen.
	AnswerTime    time.Time
	DeclineReason DeclineReason
	Comment       string
}

// ProofKind is what a proof shows.
type ProofKind string

// The proof kinds. Photos and signatures are uploaded (UploadProof); barcodes and codes are inline.
const (
	ProofPhoto     ProofKind = "photo"
	ProofSignature ProofKind = "signature"
	ProofBarcode   ProofKind = "barcode"
	ProofCode      ProofKind = "code"
)

// Uploaded reports whether proofs of kind k are files sent with UploadProof.
func (k ProofKind) Uploaded() bool { return k == ProofPhoto || k == ProofSignature }

// Stage is the stop of a task a proof or a requirement belongs to.
type Stage string

// The stages.
const (
	StagePickup  Stage = "pickup"
	StageDropoff Stage = "dropoff"
)

// ProofPolicy says whether a required proof blocks the command that needs it.
type ProofPolicy string

// The proof policies.
const (
	ProofRequired ProofPolicy = "required"
	ProofOptional ProofPolicy = "optional"
)

// ProofRequirement is one proof a task asks for at one stage.
type ProofRequirement struct {
	Kind   ProofKind
	Stage  Stage
	Policy ProofPolicy
}

// Proof is evidence attached to a task.
type Proof struct {
	// UploadID is the upload holding the bytes; empty for inline proofs (barcode, code).
	UploadID    string
	Kind        ProofKind
	Stage       Stage
	ContentType string
	SizeBytes   int64
	SHA256      string
	// Value is a scanned barcode. Codes are verified, never stored.
	Value           string
	SignerName      string
	CaptureTime     time.Time
	CaptureLocation *geo.LatLng
	CreateTime      time.Time
}

// Exclusion is a courier the engine must not offer a task to again, and why.
type Exclusion struct {
	CourierID string
	Reason    ExclusionReason
}

// Task is one delivery.
type Task struct {
	ID string
	// CustomerID is the user the delivery is for, owner of the task for authorization.
	CustomerID string
	// CreatedBy is the subject (user id or service name) that created the task: request ids are unique
	// per creator.
	CreatedBy string
	RequestID string
	// RequestHash fingerprints the create request's fields, to tell a retry from a reuse of its id.
	RequestHash string

	State State
	// CourierID is the holder from ASSIGNED on, kept afterwards as the record of who held it.
	CourierID string
	Pickup    Stop
	Dropoff   Stop
	Priority  Priority
	Size      Size
	Notes     string

	ProofRequirements []ProofRequirement
	ParcelBarcode     string
	// DeliveryCode is the one-time code the recipient gives the courier, when a code proof is required.
	// Never shown to couriers.
	DeliveryCode string

	// Offers are every offer made for the task, oldest first; the last one is open while OFFERED.
	Offers []Offer
	Proofs []Proof
	// Excluded are the couriers never to be offered the task again (declined, let an offer expire, handed
	// it back, or had their claim refused).
	Excluded []Exclusion

	CancelReason  CancelReason
	FailureReason FailureReason
	History       []StateChange

	CreateTime, UpdateTime                          time.Time
	AssignTime, PickupTime, DeliverTime, FinishTime time.Time
	// Version starts at 1 and increases on every write; it is the etag.
	Version int64

	// DueTime is when the engine must look at the task next; zero when it need not (held, final,
	// unassignable). Stores index it.
	DueTime time.Time
	// SearchStart is when the engine began looking for a courier (creation, or a hand-back); the maximum
	// wait counts from it.
	SearchStart time.Time
	// Searches counts the engine's decisions for the task since SearchStart, for back-off.
	Searches int
	// CodeAttempts counts wrong delivery codes (MaxCodeAttempts).
	CodeAttempts int
}

// CurrentOffer returns the open offer while the task is OFFERED, nil otherwise.
func (t *Task) CurrentOffer() *Offer {
	if t.State != StateOffered || len(t.Offers) == 0 {
		return nil
	}
	o := &t.Offers[len(t.Offers)-1]
	if o.State != OfferOpen {
		return nil
	}
	return o
}

// Offer returns the offer with id, nil when the task has none.
func (t *Task) Offer(id string) *Offer {
	for i := range t.Offers {
		if t.Offers[i].ID == id {
			return &t.Offers[i]
		}
	}
	return nil
}

// IsExcluded reports whether courierID may no longer be offered the task.
func (t *Task) IsExcluded(courierID string) bool {
	for _, e := range t.Excluded {
		if e.CourierID == courierID {
			return true
		}
	}
	return false
}

// Exclude records that courierID may no longer be offered the task; the first reason stays.
func (t *Task) Exclude(courierID string, r ExclusionReason) {
	if !t.IsExcluded(courierID) {
		t.Excluded = append(t.Excluded, Exclusion{CourierID: courierID, Reason: r})
	}
}

// HasProof reports whether upload uploadID is attached to the task as a proof.
func (t *Task) HasProof(uploadID string) bool {
	return slices.ContainsFunc(t.Proofs, func(pr Proof) bool { return pr.UploadID == uploadID })
}

// HeldBy reports whether courierID holds t or held it at some point (then handed it back, or it was moved
// to another courier).
func (t Task) HeldBy(courierID string) bool {
	if courierID == "" {
		return false
	}
	if t.CourierID == courierID {
		return true
	}
	for _, h := range t.History {
		if h.CourierID == courierID && h.State.Held() {
			return true
		}
	}
	return false
}

// ETag returns the task's etag: its version, opaque to clients.
func (t Task) ETag() string { return etag(t.Version) }

// Clone returns a deep copy of t, so that a closure may change it without touching the caller's copy.
func (t Task) Clone() Task {
	c := t
	c.Pickup.Window = cloneWindow(t.Pickup.Window)
	c.Dropoff.Window = cloneWindow(t.Dropoff.Window)
	c.ProofRequirements = append([]ProofRequirement(nil), t.ProofRequirements...)
	c.Offers = append([]Offer(nil), t.Offers...)
	c.Proofs = append([]Proof(nil), t.Proofs...)
	c.Excluded = append([]Exclusion(nil), t.Excluded...)
	c.History = append([]StateChange(nil), t.History...)
	return c
}

func cloneWindow(w *Window) *Window {
	if w == nil {
		return nil
	}
	c := *w
	return &c
}

// Stored returns t as stores keep it: every time in UTC, to the microsecond (zero times stay zero), so
// that what a write returns equals what a later read returns.
func (t Task) Stored() Task {
	t = t.Clone()
	for _, p := range []*Stop{&t.Pickup, &t.Dropoff} {
		if p.Window != nil {
			p.Window.Start, p.Window.End = storedTime(p.Window.Start), storedTime(p.Window.End)
		}
	}
	for i := range t.Offers {
		o := &t.Offers[i]
		o.CreateTime, o.ExpireTime, o.AnswerTime = storedTime(o.CreateTime), storedTime(o.ExpireTime), storedTime(o.AnswerTime)
	}
	for i := range t.Proofs {
		p := &t.Proofs[i]
		p.CaptureTime, p.CreateTime = storedTime(p.CaptureTime), storedTime(p.CreateTime)
	}
	for i := range t.History {
		t.History[i].At = storedTime(t.History[i].At)
	}
	for _, p := range []*time.Time{&t.CreateTime, &t.UpdateTime, &t.AssignTime, &t.PickupTime, &t.DeliverTime,
		&t.FinishTime, &t.DueTime, &t.SearchStart} {
		*p = storedTime(*p)
	}
	return t
}
