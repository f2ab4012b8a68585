package grpcapi

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
)

var t0 = time.Date(2031, 3, 14, 9, 20, 0, 0, time.UTC)

func TestEncodeTask(t *testing.T) {
	loc := geo.LatLng{Lat: 52.5, Lng: 13.4}
	task := dispatch.Task{
		ID: "t1", CustomerID: "cu", RequestID: "r1", State: dispatch.StateOffered,
		Pickup:   dispatch.Stop{Location: loc, Address: "A", Window: &dispatch.Window{Start: t0, End: t0.Add(time.Hour)}, Contact: dispatch.Contact{Name: "Ada", Phone: "+4915112345678"}, Instructions: "gate"},
		Dropoff:  dispatch.Stop{Location: loc, Address: "B"},
		Priority: dispatch.PriorityHigh, Size: dispatch.SizeLarge, Notes: "fragile",
		ProofRequirements: []dispatch.ProofRequirement{{Kind: dispatch.ProofCode, Stage: dispatch.StageDropoff, Policy: dispatch.ProofRequired}},
		ParcelBarcode:     "BC1", DeliveryCode: "0042",
		Offers: []dispatch.Offer{
			{ID: "o1", TaskID: "t1", CourierID: "c1", State: dispatch.OfferDeclined, CreateTime: t0, ExpireTime: t0.Add(20 * time.Second)},
			{ID: "o2", TaskID: "t1", CourierID: "c2", State: dispatch.OfferOpen, CreateTime: t0.Add(time.Minute), ExpireTime: t0.Add(time.Minute + 20*time.Second),
				ResponseTimeout: 20 * time.Second, PickupETA: 3 * time.Minute, PickupDistance: 900, DecisionID: "d1"},
		},
		Proofs: []dispatch.Proof{{UploadID: "u1", Kind: dispatch.ProofPhoto, Stage: dispatch.StagePickup, ContentType: "image/png", SizeBytes: 10, SHA256: "ab",
			CaptureTime: t0, CaptureLocation: &loc, CreateTime: t0, SignerName: ""}},
		History: []dispatch.StateChange{{State: dispatch.StatePending, At: t0, Actor: dispatch.ActorCustomer, ActorUserID: "cu"},
			{State: dispatch.StateOffered, At: t0.Add(time.Minute), Actor: dispatch.ActorSystem, CourierID: "c2", OfferID: "o2"}},
		CreateTime: t0, UpdateTime: t0.Add(time.Minute), Version: 3,
	}
	ts := timestamppb.New
	pt := &geov1.LatLng{Latitude: 52.5, Longitude: 13.4}
	want := &dispatchv1.Task{
		Id: "t1", State: dispatchv1.TaskState_TASK_STATE_OFFERED, CustomerId: "cu", RequestId: "r1",
		Pickup: &dispatchv1.Stop{Location: pt, Address: "A", TimeWindow: &dispatchv1.TimeWindow{StartTime: ts(t0), EndTime: ts(t0.Add(time.Hour))},
			Contact: &dispatchv1.Contact{Name: "Ada", Phone: "+4915112345678"}, Instructions: "gate"},
		Dropoff:  &dispatchv1.Stop{Location: pt, Address: "B"},
		Priority: dispatchv1.TaskPriority_TASK_PRIORITY_HIGH, Size: dispatchv1.ParcelSize_PARCEL_SIZE_LARGE, Notes: "fragile",
		CurrentOffer: &dispatchv1.Offer{Id: "o2", TaskId: "t1", CourierId: "c2", State: dispatchv1.OfferState_OFFER_STATE_OPEN,
			CreateTime: ts(t0.Add(time.Minute)), ExpireTime: ts(t0.Add(time.Minute + 20*time.Second)), PickupEta: durationpb.New(3 * time.Minute),
			PickupDistanceMeters: 900, DecisionId: "d1", ResponseTimeout: durationpb.New(20 * time.Second)},
		Proofs: []*dispatchv1.Proof{{UploadId: "u1", Kind: dispatchv1.ProofKind_PROOF_KIND_PHOTO, Stage: dispatchv1.TaskStage_TASK_STAGE_PICKUP,
			ContentType: "image/png", SizeBytes: 10, Sha256: "ab", CaptureTime: ts(t0), CaptureLocation: pt, CreateTime: ts(t0)}},
		History: []*dispatchv1.TaskStateChange{
			{State: dispatchv1.TaskState_TASK_STATE_PENDING, ChangeTime: ts(t0), Actor: dispatchv1.Actor_ACTOR_CUSTOMER, ActorUserId: "cu"},
			{State: dispatchv1.TaskState_TASK_STATE_OFFERED, ChangeTime: ts(t0.Add(time.Minute)), Actor: dispatchv1.Actor_ACTOR_SYSTEM, CourierId: "c2", OfferId: "o2"},
		},
		CreateTime: ts(t0), UpdateTime: ts(t0.Add(time.Minute)), Etag: `"3"`,
		ProofRequirements: []*dispatchv1.ProofRequirement{{Kind: dispatchv1.ProofKind_PROOF_KIND_CODE, Stage: dispatchv1.TaskStage_TASK_STAGE_DROPOFF, Policy: dispatchv1.ProofPolicy_PROOF_POLICY_REQUIRED}},
		ParcelBarcode:     "BC1", DeliveryCode: "0042",
	}
	if diff := cmp.Diff(want, encodeTask(task), protocmp.Transform()); diff != "" {
		t.Errorf("encodeTask (-want +got):\n%s", diff)
	}

	// Once the offer is accepted there is no current offer; the holder and times show.
	task.State, task.CourierID, task.AssignTime = dispatch.StateAssigned, "c2", t0.Add(2*time.Minute)
	task.Offers[1].State = dispatch.OfferAccepted
	got := encodeTask(task)
	if got.GetCurrentOffer() != nil || got.GetCourierId() != "c2" || !got.GetAssignTime().AsTime().Equal(t0.Add(2*time.Minute)) || got.GetPickupTime() != nil {
		t.Errorf("encodeTask(assigned) = offer %v, courier %q, assign %v, pickup %v", got.GetCurrentOffer(), got.GetCourierId(), got.GetAssignTime(), got.GetPickupTime())
	}
	task.State, task.FailureReason, task.CancelReason = dispatch.StateFailed, dispatch.FailureUnsafe, ""
	if got := encodeTask(task); got.GetFailureReason() != dispatchv1.FailureReason_FAILURE_REASON_UNSAFE || got.GetState() != dispatchv1.TaskState_TASK_STATE_FAILED {
		t.Errorf("encodeTask(failed) = %v, %v", got.GetState(), got.GetFailureReason())
	}
}

func TestEncodeDecision(t *testing.T) {
	d := dispatch.Decision{
		ID: "d1", TaskID: "t1", DecideTime: t0, Trigger: dispatch.TriggerRetry, Outcome: dispatch.OutcomeOffered,
		Degraded: true, ETAProvider: "local-geodesic", DegradationDetail: "route service circuit breaker open",
		Weights: dispatch.DefaultWeights, SearchRadius: 3000, Winner: "c1", Rationale: "earliest ETA",
		Candidates: []dispatch.Candidate{
			{CourierID: "c1", Rank: 1, Mode: geo.Bicycle, Location: geo.LatLng{Lat: 1, Lng: 2}, OfferID: "o1", OfferState: dispatch.OfferDeclined, DeclineReason: dispatch.DeclineTooFar,
				Score: &dispatch.Score{PickupETA: time.Minute, PickupDistance: 300, ActiveTasks: 1, Capacity: 2, Idle: time.Hour, ETAScore: 1, DistanceScore: 0.5, LoadScore: 0.25, FairnessScore: 0.125, Total: 1.875}},
			{CourierID: "c2", Excluded: dispatch.ExcludedNotConnected, Mode: geo.Van},
		},
	}
	got := encodeExplanation(dispatch.Explanation{TaskID: "t1", State: dispatch.StateOffered, Decisions: []dispatch.Decision{d}})
	want := &dispatchv1.AssignmentExplanation{TaskId: "t1", TaskState: dispatchv1.TaskState_TASK_STATE_OFFERED, Decisions: []*dispatchv1.AssignmentDecision{{
		Id: "d1", DecideTime: timestamppb.New(t0), Trigger: dispatchv1.DecisionTrigger_DECISION_TRIGGER_RETRY, Outcome: dispatchv1.DecisionOutcome_DECISION_OUTCOME_OFFERED,
		Degraded: true, EtaProvider: "local-geodesic", DegradationDetail: "route service circuit breaker open",
		Weights: &dispatchv1.ScoringWeights{Eta: 1, Distance: 0.25, Load: 0.5, Fairness: 0.2}, SearchRadiusMeters: 3000, WinnerCourierId: "c1", Rationale: "earliest ETA",
		Candidates: []*dispatchv1.AssignmentCandidate{
			{CourierId: "c1", Rank: 1, TransportMode: geov1.TransportMode_TRANSPORT_MODE_BICYCLE, Location: &geov1.LatLng{Latitude: 1, Longitude: 2}, OfferId: "o1",
				OfferState: dispatchv1.OfferState_OFFER_STATE_DECLINED, DeclineReason: dispatchv1.DeclineReason_DECLINE_REASON_TOO_FAR,
				Score: &dispatchv1.CandidateScore{PickupEta: durationpb.New(time.Minute), PickupDistanceMeters: 300, ActiveTasks: 1, Capacity: 2, IdleDuration: durationpb.New(time.Hour),
					EtaScore: 1, DistanceScore: 0.5, LoadScore: 0.25, FairnessScore: 0.125, TotalScore: 1.875}},
			{CourierId: "c2", ExclusionReason: dispatchv1.ExclusionReason_EXCLUSION_REASON_NOT_CONNECTED, TransportMode: geov1.TransportMode_TRANSPORT_MODE_VAN, Location: &geov1.LatLng{}},
		},
	}}}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("encodeExplanation (-want +got):\n%s", diff)
	}
}

func TestEncodeOverview(t *testing.T) {
	o := dispatch.Overview{
		Courier: dispatch.CourierInfo{ID: "c1", DisplayName: "Ada", Mode: geo.Car, Status: dispatch.CourierBusy, ActiveTasks: 1, Capacity: 2, TaskIDs: []string{"t1"}},
		Tasks:   []dispatch.Task{{ID: "t1", State: dispatch.StateAssigned, CourierID: "c1", Version: 2}},
		Offers:  []dispatch.Offer{{ID: "o9", TaskID: "t9", CourierID: "c1", State: dispatch.OfferOpen, CreateTime: t0, ExpireTime: t0.Add(20 * time.Second)}},
	}
	got := encodeOverview(o)
	want := &courierv1.CourierSnapshot{CourierId: "c1", DisplayName: "Ada", TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR, Status: courierv1.CourierStatus_COURIER_STATUS_BUSY,
		ActiveTaskCount: 1, Capacity: 2, ActiveTaskIds: []string{"t1"}}
	if diff := cmp.Diff(want, got.GetCourier(), protocmp.Transform()); diff != "" {
		t.Errorf("overview courier (-want +got):\n%s", diff)
	}
	if len(got.GetActiveTasks()) != 1 || got.GetActiveTasks()[0].GetEtag() != `"2"` || len(got.GetOpenOffers()) != 1 ||
		got.GetOpenOffers()[0].GetResponseTimeout().AsDuration() != 20*time.Second {
		t.Errorf("overview = %v", got)
	}
}

func TestDecodeCreate(t *testing.T) {
	req := &dispatchv1.CreateTaskRequest{
		RequestId: "r1", CustomerId: "cu", Notes: "n", ParcelBarcode: "B",
		Pickup:   &dispatchv1.Stop{Location: &geov1.LatLng{Latitude: 1, Longitude: 2}, Address: "A", TimeWindow: &dispatchv1.TimeWindow{StartTime: timestamppb.New(t0), EndTime: timestamppb.New(t0.Add(time.Hour))}},
		Dropoff:  &dispatchv1.Stop{Location: &geov1.LatLng{Latitude: 3, Longitude: 4}, Address: "B", Contact: &dispatchv1.Contact{Name: "Ada"}, Instructions: "i"},
		Priority: dispatchv1.TaskPriority_TASK_PRIORITY_URGENT, Size: 9,
		ProofRequirements: []*dispatchv1.ProofRequirement{{Kind: dispatchv1.ProofKind_PROOF_KIND_BARCODE, Stage: dispatchv1.TaskStage_TASK_STAGE_PICKUP, Policy: dispatchv1.ProofPolicy_PROOF_POLICY_OPTIONAL}},
	}
	got, err := decodeCreate(req)
	if err != nil {
		t.Fatal(err)
	}
	want := dispatch.CreateRequest{
		RequestID: "r1", CustomerID: "cu", Notes: "n", ParcelBarcode: "B", Priority: dispatch.PriorityUrgent, Size: "undefined(9)",
		Pickup:            dispatch.Stop{Location: geo.LatLng{Lat: 1, Lng: 2}, Address: "A", Window: &dispatch.Window{Start: t0, End: t0.Add(time.Hour)}},
		Dropoff:           dispatch.Stop{Location: geo.LatLng{Lat: 3, Lng: 4}, Address: "B", Contact: dispatch.Contact{Name: "Ada"}, Instructions: "i"},
		ProofRequirements: []dispatch.ProofRequirement{{Kind: dispatch.ProofBarcode, Stage: dispatch.StagePickup, Policy: dispatch.ProofOptional}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decodeCreate (-want +got):\n%s", diff)
	}

	_, err = decodeCreate(&dispatchv1.CreateTaskRequest{RequestId: "r", Pickup: &dispatchv1.Stop{Address: "A", TimeWindow: &dispatchv1.TimeWindow{}}})
	e := apperr.As(err)
	if e == nil || e.Code != apperr.Invalid {
		t.Fatalf("decodeCreate(missing parts) = %v, want Invalid", err)
	}
	var fields []string
	for _, v := range e.Violations {
		fields = append(fields, v.Field)
	}
	wantFields := []string{"pickup.location", "pickup.time_window.start_time", "pickup.time_window.end_time", "dropoff"}
	if diff := cmp.Diff(wantFields, fields); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
}

func TestDecodeCommand(t *testing.T) {
	at := timestamppb.New(t0)
	here := &geov1.LatLng{Latitude: 52.5, Longitude: 13.4}
	loc := geo.LatLng{Lat: 52.5, Lng: 13.4}
	for _, tt := range []struct {
		in   *dispatchv1.StreamAssignmentsRequest
		want dispatch.Command
	}{
		{&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{Accept: &dispatchv1.AcceptOffer{OfferId: "o"}}},
			dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: "o"}}},
		{&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Decline{Decline: &dispatchv1.DeclineOffer{OfferId: "o", Reason: dispatchv1.DeclineReason_DECLINE_REASON_SHIFT_ENDING, Comment: "c"}}},
			dispatch.Command{Decline: &dispatch.DeclineCmd{OfferID: "o", Reason: dispatch.DeclineShiftEnding, Comment: "c"}}},
		{&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{PickedUp: &dispatchv1.ConfirmPickup{TaskId: "t", Location: here, ProofUploadIds: []string{"u"}, OccurTime: at,
			InlineProofs: []*dispatchv1.InlineProof{{Kind: dispatchv1.ProofKind_PROOF_KIND_BARCODE, Value: &dispatchv1.InlineProof_Barcode{Barcode: "B"}, CaptureTime: at, CaptureLocation: here}}}}},
			dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: "t", Location: &loc, UploadIDs: []string{"u"}, OccurTime: t0,
				Inline: []dispatch.InlineProof{{Kind: dispatch.ProofBarcode, Barcode: "B", CaptureTime: t0, CaptureLocation: &loc}}}}},
		{&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Delivered{Delivered: &dispatchv1.ConfirmDelivery{TaskId: "t",
			InlineProofs: []*dispatchv1.InlineProof{{Kind: dispatchv1.ProofKind_PROOF_KIND_CODE, Value: &dispatchv1.InlineProof_Code{Code: "1234"}}}}}},
			dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: "t", Inline: []dispatch.InlineProof{{Kind: dispatch.ProofCode, Code: "1234"}}}}},
		{&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Failed{Failed: &dispatchv1.ReportFailure{TaskId: "t", Reason: dispatchv1.FailureReason_FAILURE_REASON_UNSAFE, Comment: "c", ProofUploadIds: []string{"u"}, Location: here, OccurTime: at}}},
			dispatch.Command{Fail: &dispatch.FailCmd{TaskID: "t", Reason: dispatch.FailureUnsafe, Comment: "c", UploadIDs: []string{"u"}, Location: &loc, OccurTime: t0}}},
		{&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Release{Release: &dispatchv1.ReleaseTask{TaskId: "t", Reason: dispatchv1.ReleaseReason_RELEASE_REASON_TOO_FAR, Comment: "c", OccurTime: at}}},
			dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: "t", Reason: dispatch.ReleaseTooFar, Comment: "c", OccurTime: t0}}},
	} {
		got, err := decodeCommand(tt.in)
		if err != nil {
			t.Errorf("decodeCommand(%v) = %v", tt.in, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("decodeCommand(%v) (-want +got):\n%s", tt.in, diff)
		}
	}
	_, err := decodeCommand(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Release{Release: &dispatchv1.ReleaseTask{TaskId: "t", OccurTime: &timestamppb.Timestamp{Nanos: -1}}}})
	if apperr.CodeOf(err) != apperr.Invalid {
		t.Errorf("decodeCommand(malformed occur_time) = %v, want Invalid", err)
	}
}

func TestEncodeCommandResult(t *testing.T) {
	// The domain names a missing proof's kind and stage by its own values; the contract by the enum names
	// ("metadata "kind" names the ProofKind and "stage" the TaskStage, such as "PROOF_KIND_SIGNATURE"").
	got := encodeCommandResult(dispatch.CommandResult{CommandID: "c", Replayed: true, Err: &dispatch.CommandError{
		Code: apperr.FailedPrecondition, Message: "m", Reason: "PROOF_REQUIRED", Metadata: map[string]string{"kind": "SIGNATURE", "stage": "DROPOFF"}, RetryAfter: time.Second}})
	want := &dispatchv1.CommandResult{CommandId: "c", Replayed: true, Error: &dispatchv1.CommandError{Code: 9, Message: "m", Reason: "PROOF_REQUIRED",
		Metadata: map[string]string{"kind": "PROOF_KIND_SIGNATURE", "stage": "TASK_STAGE_DROPOFF"}, RetryAfter: durationpb.New(time.Second)}}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("encodeCommandResult (-want +got):\n%s", diff)
	}
	other := map[string]string{"upload_id": "u1", "attempts_left": "2"}
	if got := encodeCommandResult(dispatch.CommandResult{Err: &dispatch.CommandError{Code: apperr.FailedPrecondition, Metadata: other}}).GetError().GetMetadata(); !cmp.Equal(got, other) {
		t.Errorf("command error metadata = %v, want %v unchanged", got, other)
	}
	for code, n := range map[apperr.Code]int32{apperr.NotFound: 5, apperr.Conflict: 6, apperr.Aborted: 10, apperr.Unavailable: 14, apperr.Invalid: 3} {
		if got := encodeCommandResult(dispatch.CommandResult{Err: &dispatch.CommandError{Code: code}}).GetError().GetCode(); got != n {
			t.Errorf("command error code of %s = %d, want %d", code, got, n)
		}
	}
}
