package grpcapi

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/courierclient"
	"lastmile/internal/geo"
	"lastmile/internal/geo/geoproto"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/protoenum"
)

// decoder collects what the domain cannot see once a request is decoded: missing messages (a missing
// point would decode to 0,0, a valid place) and malformed timestamps and durations. Ranges, enum values and
// formats are the domain's to check (and the validation interceptor's before it).
type decoder struct {
	violations []apperr.FieldViolation
}

func (d *decoder) add(field, desc string) {
	d.violations = append(d.violations, apperr.FieldViolation{Field: field, Description: desc})
}

func (d *decoder) point(field string, p *geov1.LatLng) geo.LatLng {
	if p == nil {
		d.add(field, "is required")
		return geo.LatLng{}
	}
	return geoproto.LatLng(p)
}

// optionalPoint returns nil for an absent point.
func (d *decoder) optionalPoint(p *geov1.LatLng) *geo.LatLng {
	if p == nil {
		return nil
	}
	l := geoproto.LatLng(p)
	return &l
}

// timestamp returns the zero time for an absent timestamp; the domain decides what that means.
func (d *decoder) timestamp(field string, ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil {
		d.add(field, "is not a valid timestamp")
		return time.Time{}
	}
	return ts.AsTime()
}

func (d *decoder) requiredTimestamp(field string, ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		d.add(field, "is required")
		return time.Time{}
	}
	return d.timestamp(field, ts)
}

func (d *decoder) err() error {
	if len(d.violations) == 0 {
		return nil
	}
	return apperr.InvalidRequest(d.violations...)
}

func indexed(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// timestamp returns nil for the zero time, which the domain uses for "unset".
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// duration returns nil for zero.
func duration(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

// The enum codecs: UNSPECIFIED is the domain's empty value, an undefined number a value the domain
// refuses (package protoenum).
var (
	states = protoenum.New(map[dispatch.State]dispatchv1.TaskState{
		dispatch.StatePending:      dispatchv1.TaskState_TASK_STATE_PENDING,
		dispatch.StateOffered:      dispatchv1.TaskState_TASK_STATE_OFFERED,
		dispatch.StateAssigned:     dispatchv1.TaskState_TASK_STATE_ASSIGNED,
		dispatch.StatePickedUp:     dispatchv1.TaskState_TASK_STATE_PICKED_UP,
		dispatch.StateDelivered:    dispatchv1.TaskState_TASK_STATE_DELIVERED,
		dispatch.StateCancelled:    dispatchv1.TaskState_TASK_STATE_CANCELLED,
		dispatch.StateFailed:       dispatchv1.TaskState_TASK_STATE_FAILED,
		dispatch.StateUnassignable: dispatchv1.TaskState_TASK_STATE_UNASSIGNABLE,
	})
	priorities = protoenum.New(map[dispatch.Priority]dispatchv1.TaskPriority{
		dispatch.PriorityLow:    dispatchv1.TaskPriority_TASK_PRIORITY_LOW,
		dispatch.PriorityNormal: dispatchv1.TaskPriority_TASK_PRIORITY_NORMAL,
		dispatch.PriorityHigh:   dispatchv1.TaskPriority_TASK_PRIORITY_HIGH,
		dispatch.PriorityUrgent: dispatchv1.TaskPriority_TASK_PRIORITY_URGENT,
	})
	sizes = protoenum.New(map[dispatch.Size]dispatchv1.ParcelSize{
		dispatch.SizeSmall:      dispatchv1.ParcelSize_PARCEL_SIZE_SMALL,
		dispatch.SizeMedium:     dispatchv1.ParcelSize_PARCEL_SIZE_MEDIUM,
		dispatch.SizeLarge:      dispatchv1.ParcelSize_PARCEL_SIZE_LARGE,
		dispatch.SizeExtraLarge: dispatchv1.ParcelSize_PARCEL_SIZE_EXTRA_LARGE,
	})
	actors = protoenum.New(map[dispatch.Actor]dispatchv1.Actor{
		dispatch.ActorSystem:     dispatchv1.Actor_ACTOR_SYSTEM,
		dispatch.ActorCustomer:   dispatchv1.Actor_ACTOR_CUSTOMER,
		dispatch.ActorCourier:    dispatchv1.Actor_ACTOR_COURIER,
		dispatch.ActorDispatcher: dispatchv1.Actor_ACTOR_DISPATCHER,
	})
	cancelReasons = protoenum.New(map[dispatch.CancelReason]dispatchv1.CancelReason{
		dispatch.CancelCustomerRequest:  dispatchv1.CancelReason_CANCEL_REASON_CUSTOMER_REQUEST,
		dispatch.CancelDuplicate:        dispatchv1.CancelReason_CANCEL_REASON_DUPLICATE,
		dispatch.CancelIncorrectDetails: dispatchv1.CancelReason_CANCEL_REASON_INCORRECT_DETAILS,
		dispatch.CancelNoCourier:        dispatchv1.CancelReason_CANCEL_REASON_NO_COURIER,
		dispatch.CancelOther:            dispatchv1.CancelReason_CANCEL_REASON_OTHER,
	})
	failureReasons = protoenum.New(map[dispatch.FailureReason]dispatchv1.FailureReason{
		dispatch.FailureRecipientUnavailable: dispatchv1.FailureReason_FAILURE_REASON_RECIPIENT_UNAVAILABLE,
		dispatch.FailureRecipientRefused:     dispatchv1.FailureReason_FAILURE_REASON_RECIPIENT_REFUSED,
		dispatch.FailureAddressNotFound:      dispatchv1.FailureReason_FAILURE_REASON_ADDRESS_NOT_FOUND,
		dispatch.FailureParcelNotReady:       dispatchv1.FailureReason_FAILURE_REASON_PARCEL_NOT_READY,
		dispatch.FailureParcelDamaged:        dispatchv1.FailureReason_FAILURE_REASON_PARCEL_DAMAGED,
		dispatch.FailureCourierUnable:        dispatchv1.FailureReason_FAILURE_REASON_COURIER_UNABLE,
		dispatch.FailureUnsafe:               dispatchv1.FailureReason_FAILURE_REASON_UNSAFE,
		dispatch.FailureOther:                dispatchv1.FailureReason_FAILURE_REASON_OTHER,
	})
	releaseReasons = protoenum.New(map[dispatch.ReleaseReason]dispatchv1.ReleaseReason{
		dispatch.ReleaseParcelNotReady: dispatchv1.ReleaseReason_RELEASE_REASON_PARCEL_NOT_READY,
		dispatch.ReleaseCourierUnable:  dispatchv1.ReleaseReason_RELEASE_REASON_COURIER_UNABLE,
		dispatch.ReleaseVehicleProblem: dispatchv1.ReleaseReason_RELEASE_REASON_VEHICLE_PROBLEM,
		dispatch.ReleaseTooFar:         dispatchv1.ReleaseReason_RELEASE_REASON_TOO_FAR,
		dispatch.ReleaseOther:          dispatchv1.ReleaseReason_RELEASE_REASON_OTHER,
	})
	declineReasons = protoenum.New(map[dispatch.DeclineReason]dispatchv1.DeclineReason{
		dispatch.DeclineTooFar:         dispatchv1.DeclineReason_DECLINE_REASON_TOO_FAR,
		dispatch.DeclineTooBusy:        dispatchv1.DeclineReason_DECLINE_REASON_TOO_BUSY,
		dispatch.DeclineParcelTooLarge: dispatchv1.DeclineReason_DECLINE_REASON_PARCEL_TOO_LARGE,
		dispatch.DeclineShiftEnding:    dispatchv1.DeclineReason_DECLINE_REASON_SHIFT_ENDING,
		dispatch.DeclineUnsafeArea:     dispatchv1.DeclineReason_DECLINE_REASON_UNSAFE_AREA,
		dispatch.DeclineOther:          dispatchv1.DeclineReason_DECLINE_REASON_OTHER,
	})
	offerStates = protoenum.New(map[dispatch.OfferState]dispatchv1.OfferState{
		dispatch.OfferOpen:      dispatchv1.OfferState_OFFER_STATE_OPEN,
		dispatch.OfferAccepted:  dispatchv1.OfferState_OFFER_STATE_ACCEPTED,
		dispatch.OfferDeclined:  dispatchv1.OfferState_OFFER_STATE_DECLINED,
		dispatch.OfferExpired:   dispatchv1.OfferState_OFFER_STATE_EXPIRED,
		dispatch.OfferWithdrawn: dispatchv1.OfferState_OFFER_STATE_WITHDRAWN,
	})
	proofKinds = protoenum.New(map[dispatch.ProofKind]dispatchv1.ProofKind{
		dispatch.ProofPhoto:     dispatchv1.ProofKind_PROOF_KIND_PHOTO,
		dispatch.ProofSignature: dispatchv1.ProofKind_PROOF_KIND_SIGNATURE,
		dispatch.ProofBarcode:   dispatchv1.ProofKind_PROOF_KIND_BARCODE,
		dispatch.ProofCode:      dispatchv1.ProofKind_PROOF_KIND_CODE,
	})
	stages = protoenum.New(map[dispatch.Stage]dispatchv1.TaskStage{
		dispatch.StagePickup:  dispatchv1.TaskStage_TASK_STAGE_PICKUP,
		dispatch.StageDropoff: dispatchv1.TaskStage_TASK_STAGE_DROPOFF,
	})
	proofPolicies = protoenum.New(map[dispatch.ProofPolicy]dispatchv1.ProofPolicy{
		dispatch.ProofRequired: dispatchv1.ProofPolicy_PROOF_POLICY_REQUIRED,
		dispatch.ProofOptional: dispatchv1.ProofPolicy_PROOF_POLICY_OPTIONAL,
	})
	views = protoenum.New(map[dispatch.View]dispatchv1.TaskView{
		dispatch.ViewBasic: dispatchv1.TaskView_TASK_VIEW_BASIC,
		dispatch.ViewFull:  dispatchv1.TaskView_TASK_VIEW_FULL,
	})
	triggers = protoenum.New(map[dispatch.Trigger]dispatchv1.DecisionTrigger{
		dispatch.TriggerAutomatic: dispatchv1.DecisionTrigger_DECISION_TRIGGER_AUTOMATIC,
		dispatch.TriggerRetry:     dispatchv1.DecisionTrigger_DECISION_TRIGGER_RETRY,
		dispatch.TriggerOverride:  dispatchv1.DecisionTrigger_DECISION_TRIGGER_DISPATCHER_OVERRIDE,
	})
	outcomes = protoenum.New(map[dispatch.Outcome]dispatchv1.DecisionOutcome{
		dispatch.OutcomeOffered:            dispatchv1.DecisionOutcome_DECISION_OUTCOME_OFFERED,
		dispatch.OutcomeDispatcherAssigned: dispatchv1.DecisionOutcome_DECISION_OUTCOME_DISPATCHER_ASSIGNED,
		dispatch.OutcomeNoCandidates:       dispatchv1.DecisionOutcome_DECISION_OUTCOME_NO_CANDIDATES,
		dispatch.OutcomeAllExcluded:        dispatchv1.DecisionOutcome_DECISION_OUTCOME_ALL_EXCLUDED,
		dispatch.OutcomeDeferred:           dispatchv1.DecisionOutcome_DECISION_OUTCOME_DEFERRED,
		dispatch.OutcomeUnassignable:       dispatchv1.DecisionOutcome_DECISION_OUTCOME_UNASSIGNABLE,
	})
	exclusions = protoenum.New(map[dispatch.ExclusionReason]dispatchv1.ExclusionReason{
		dispatch.ExcludedDeclined:      dispatchv1.ExclusionReason_EXCLUSION_REASON_DECLINED,
		dispatch.ExcludedOfferExpired:  dispatchv1.ExclusionReason_EXCLUSION_REASON_OFFER_EXPIRED,
		dispatch.ExcludedNoCapacity:    dispatchv1.ExclusionReason_EXCLUSION_REASON_NO_CAPACITY,
		dispatch.ExcludedTransportMode: dispatchv1.ExclusionReason_EXCLUSION_REASON_TRANSPORT_MODE,
		dispatch.ExcludedNoRoute:       dispatchv1.ExclusionReason_EXCLUSION_REASON_NO_ROUTE,
		dispatch.ExcludedPickupWindow:  dispatchv1.ExclusionReason_EXCLUSION_REASON_PICKUP_WINDOW,
		dispatch.ExcludedOtherOffer:    dispatchv1.ExclusionReason_EXCLUSION_REASON_OTHER_OFFER_OPEN,
		dispatch.ExcludedUnavailable:   dispatchv1.ExclusionReason_EXCLUSION_REASON_UNAVAILABLE,
		dispatch.ExcludedStaleLocation: dispatchv1.ExclusionReason_EXCLUSION_REASON_STALE_LOCATION,
		dispatch.ExcludedNotConnected:  dispatchv1.ExclusionReason_EXCLUSION_REASON_NOT_CONNECTED,
	})
	noticeReasons = protoenum.New(map[dispatch.NoticeReason]dispatchv1.TaskNoticeReason{
		dispatch.NoticeAssigned:   dispatchv1.TaskNoticeReason_TASK_NOTICE_REASON_ASSIGNED,
		dispatch.NoticeReassigned: dispatchv1.TaskNoticeReason_TASK_NOTICE_REASON_REASSIGNED,
		dispatch.NoticeCancelled:  dispatchv1.TaskNoticeReason_TASK_NOTICE_REASON_CANCELLED,
		dispatch.NoticeUpdated:    dispatchv1.TaskNoticeReason_TASK_NOTICE_REASON_UPDATED,
	})
)

// decodeStop decodes a request's stop; field names the stop ("pickup").
func (d *decoder) stop(field string, s *dispatchv1.Stop) dispatch.Stop {
	if s == nil {
		d.add(field, "is required")
		return dispatch.Stop{}
	}
	out := dispatch.Stop{
		Location:     d.point(field+".location", s.GetLocation()),
		Address:      s.GetAddress(),
		Contact:      dispatch.Contact{Name: s.GetContact().GetName(), Phone: s.GetContact().GetPhone()},
		Instructions: s.GetInstructions(),
	}
	if w := s.GetTimeWindow(); w != nil {
		out.Window = &dispatch.Window{
			Start: d.requiredTimestamp(field+".time_window.start_time", w.GetStartTime()),
			End:   d.requiredTimestamp(field+".time_window.end_time", w.GetEndTime()),
		}
	}
	return out
}

// decodeCreate decodes CreateTaskRequest.
func decodeCreate(req *dispatchv1.CreateTaskRequest) (dispatch.CreateRequest, error) {
	var d decoder
	out := dispatch.CreateRequest{
		RequestID:     req.GetRequestId(),
		Pickup:        d.stop("pickup", req.GetPickup()),
		Dropoff:       d.stop("dropoff", req.GetDropoff()),
		Priority:      priorities.Decode(req.GetPriority()),
		Size:          sizes.Decode(req.GetSize()),
		Notes:         req.GetNotes(),
		CustomerID:    req.GetCustomerId(),
		ParcelBarcode: req.GetParcelBarcode(),
	}
	for _, r := range req.GetProofRequirements() {
		out.ProofRequirements = append(out.ProofRequirements, dispatch.ProofRequirement{
			Kind: proofKinds.Decode(r.GetKind()), Stage: stages.Decode(r.GetStage()), Policy: proofPolicies.Decode(r.GetPolicy()),
		})
	}
	return out, d.err()
}

func encodeStop(s dispatch.Stop) *dispatchv1.Stop {
	out := &dispatchv1.Stop{
		Location:     geoproto.LatLngProto(s.Location),
		Address:      s.Address,
		Instructions: s.Instructions,
	}
	if s.Contact != (dispatch.Contact{}) {
		out.Contact = &dispatchv1.Contact{Name: s.Contact.Name, Phone: s.Contact.Phone}
	}
	if w := s.Window; w != nil {
		out.TimeWindow = &dispatchv1.TimeWindow{StartTime: timestamppb.New(w.Start), EndTime: timestamppb.New(w.End)}
	}
	return out
}

// encodeTask encodes a task as the domain returned it: already redacted for the caller and cut to the
// view (Task.For).
func encodeTask(t dispatch.Task) *dispatchv1.Task {
	out := &dispatchv1.Task{
		Id:            t.ID,
		State:         states.Encode(t.State),
		CourierId:     t.CourierID,
		CustomerId:    t.CustomerID,
		Pickup:        encodeStop(t.Pickup),
		Dropoff:       encodeStop(t.Dropoff),
		Priority:      priorities.Encode(t.Priority),
		Size:          sizes.Encode(t.Size),
		Notes:         t.Notes,
		CancelReason:  cancelReasons.Encode(t.CancelReason),
		FailureReason: failureReasons.Encode(t.FailureReason),
		RequestId:     t.RequestID,
		CreateTime:    timestamp(t.CreateTime),
		UpdateTime:    timestamp(t.UpdateTime),
		AssignTime:    timestamp(t.AssignTime),
		PickupTime:    timestamp(t.PickupTime),
		DeliverTime:   timestamp(t.DeliverTime),
		FinishTime:    timestamp(t.FinishTime),
		Etag:          t.ETag(),
		ParcelBarcode: t.ParcelBarcode,
		DeliveryCode:  t.DeliveryCode,
	}
	// While OFFERED the task's last offer is open. Redaction removed the offers the caller may not see
	// (every offer for customers, other couriers' offers for couriers), so for them it is absent.
	if o := t.CurrentOffer(); o != nil {
		out.CurrentOffer = encodeOffer(*o)
	}
	for _, p := range t.Proofs {
		out.Proofs = append(out.Proofs, encodeProof(p))
	}
	for _, h := range t.History {
		out.History = append(out.History, &dispatchv1.TaskStateChange{
			State:       states.Encode(h.State),
			ChangeTime:  timestamp(h.At),
			Actor:       actors.Encode(h.Actor),
			CourierId:   h.CourierID,
			Comment:     h.Comment,
			ActorUserId: h.ActorUserID,
			OfferId:     h.OfferID,
		})
	}
	for _, r := range t.ProofRequirements {
		out.ProofRequirements = append(out.ProofRequirements, &dispatchv1.ProofRequirement{
			Kind: proofKinds.Encode(r.Kind), Stage: stages.Encode(r.Stage), Policy: proofPolicies.Encode(r.Policy),
		})
	}
	return out
}

// encodeTasks encodes a list of tasks.
func encodeTasks(ts []dispatch.Task) []*dispatchv1.Task {
	out := make([]*dispatchv1.Task, len(ts))
	for i, t := range ts {
		out[i] = encodeTask(t)
	}
	return out
}

func encodeOffer(o dispatch.Offer) *dispatchv1.Offer {
	timeout := o.ResponseTimeout
	if timeout == 0 && !o.ExpireTime.IsZero() {
		timeout = o.ExpireTime.Sub(o.CreateTime)
	}
	return &dispatchv1.Offer{
		Id:                   o.ID,
		TaskId:               o.TaskID,
		CourierId:            o.CourierID,
		State:                offerStates.Encode(o.State),
		CreateTime:           timestamp(o.CreateTime),
		ExpireTime:           timestamp(o.ExpireTime),
		PickupEta:            durationpb.New(o.PickupETA),
		PickupDistanceMeters: o.PickupDistance,
		DecisionId:           o.DecisionID,
		ResponseTimeout:      durationpb.New(timeout),
	}
}

func encodeOffers(os []dispatch.Offer) []*dispatchv1.Offer {
	out := make([]*dispatchv1.Offer, len(os))
	for i, o := range os {
		out[i] = encodeOffer(o)
	}
	return out
}

func encodeProof(p dispatch.Proof) *dispatchv1.Proof {
	out := &dispatchv1.Proof{
		UploadId:    p.UploadID,
		Kind:        proofKinds.Encode(p.Kind),
		ContentType: p.ContentType,
		SizeBytes:   p.SizeBytes,
		Sha256:      p.SHA256,
		CaptureTime: timestamp(p.CaptureTime),
		CreateTime:  timestamp(p.CreateTime),
		Stage:       stages.Encode(p.Stage),
		Value:       p.Value,
		SignerName:  p.SignerName,
	}
	if p.CaptureLocation != nil {
		out.CaptureLocation = geoproto.LatLngProto(*p.CaptureLocation)
	}
	return out
}

func encodeExplanation(e dispatch.Explanation) *dispatchv1.AssignmentExplanation {
	out := &dispatchv1.AssignmentExplanation{TaskId: e.TaskID, TaskState: states.Encode(e.State)}
	for _, d := range e.Decisions {
		out.Decisions = append(out.Decisions, encodeDecision(d))
	}
	return out
}

func encodeDecision(d dispatch.Decision) *dispatchv1.AssignmentDecision {
	out := &dispatchv1.AssignmentDecision{
		Id:                 d.ID,
		DecideTime:         timestamp(d.DecideTime),
		Trigger:            triggers.Encode(d.Trigger),
		Degraded:           d.Degraded,
		EtaProvider:        d.ETAProvider,
		DegradationDetail:  d.DegradationDetail,
		Weights:            &dispatchv1.ScoringWeights{Eta: d.Weights.ETA, Distance: d.Weights.Distance, Load: d.Weights.Load, Fairness: d.Weights.Fairness},
		SearchRadiusMeters: d.SearchRadius,
		WinnerCourierId:    d.Winner,
		Rationale:          d.Rationale,
		Outcome:            outcomes.Encode(d.Outcome),
	}
	for _, c := range d.Candidates {
		ac := &dispatchv1.AssignmentCandidate{
			CourierId:       c.CourierID,
			Rank:            int32(c.Rank),
			ExclusionReason: exclusions.Encode(c.Excluded),
			TransportMode:   geoproto.ModeProto(c.Mode),
			Location:        geoproto.LatLngProto(c.Location),
			OfferId:         c.OfferID,
			OfferState:      offerStates.Encode(c.OfferState),
			DeclineReason:   declineReasons.Encode(c.DeclineReason),
		}
		if s := c.Score; s != nil {
			ac.Score = &dispatchv1.CandidateScore{
				PickupEta:            durationpb.New(s.PickupETA),
				PickupDistanceMeters: s.PickupDistance,
				ActiveTasks:          int32(s.ActiveTasks),
				Capacity:             int32(s.Capacity),
				IdleDuration:         durationpb.New(s.Idle),
				EtaScore:             s.ETAScore,
				DistanceScore:        s.DistanceScore,
				LoadScore:            s.LoadScore,
				FairnessScore:        s.FairnessScore,
				TotalScore:           s.Total,
			}
		}
		out.Candidates = append(out.Candidates, ac)
	}
	return out
}

func encodeOverview(o dispatch.Overview) *dispatchv1.CourierOverview {
	return &dispatchv1.CourierOverview{
		Courier:     courierclient.Snapshot(o.Courier),
		ActiveTasks: encodeTasks(o.Tasks),
		OpenOffers:  encodeOffers(o.Offers),
	}
}

// decodeFilter decodes the filters ListTasks and WatchTasks share.
func decodeFilter(ss []dispatchv1.TaskState, courierID, customerID string) dispatch.TaskFilter {
	f := dispatch.TaskFilter{CourierID: courierID, CustomerID: customerID}
	for _, s := range ss {
		f.States = append(f.States, states.Decode(s))
	}
	return f
}
