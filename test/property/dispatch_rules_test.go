package property_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
)

// dispatchID is a well-formed UUID for the dispatch requests below.
const dispatchID = "0b8e6c1e-4d5f-4a8e-9c3b-2f1a7d6e5c4b"

// violatedRules validates m and returns the ids of the rules it breaks, sorted; nil when m is valid. Any
// error other than a *protovalidate.ValidationError (a rule that failed to evaluate) fails the test.
func violatedRules(t *testing.T, name string, m proto.Message) []string {
	t.Helper()
	err := protovalidate.Validate(m)
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("%s: Validate = %v, want nil or a *protovalidate.ValidationError", name, err)
	}
	ids := make([]string, 0, len(verr.Violations))
	for _, v := range verr.Violations {
		ids = append(ids, v.Proto.GetRuleId())
	}
	slices.Sort(ids)
	return ids
}

// ruleCase is one request and the rule ids it must break (none when valid).
type ruleCase struct {
	name string
	msg  proto.Message
	want []string
}

// checkRules validates every case and compares the broken rules exactly.
func checkRules(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, c := range cases {
		if diff := cmp.Diff(c.want, violatedRules(t, c.name, c.msg)); diff != "" {
			t.Errorf("%s: violated rules mismatch (-want +got):\n%s", c.name, diff)
		}
	}
}

// uploadStart returns an UploadStart of a 10-byte file of the given kind and content type.
func uploadStart(kind dispatchv1.ProofKind, contentType string) *dispatchv1.UploadStart {
	return &dispatchv1.UploadStart{
		TaskId: dispatchID, Kind: kind, ContentType: contentType, SizeBytes: 10,
		Sha256: strings.Repeat("ab", 32),
	}
}

// TestDispatchUploadStartRules checks that signatures are PNG only (an SVG served to a dashboard is stored
// XSS), that barcodes and codes are never uploaded, and the capture time and signer name rules.
func TestDispatchUploadStartRules(t *testing.T) {
	now := time.Now()
	withCapture := func(at time.Time) *dispatchv1.UploadStart {
		u := uploadStart(dispatchv1.ProofKind_PROOF_KIND_PHOTO, "image/jpeg")
		u.CaptureTime = timestamppb.New(at)
		return u
	}
	signed := func(kind dispatchv1.ProofKind, contentType, signer string) *dispatchv1.UploadStart {
		u := uploadStart(kind, contentType)
		u.SignerName = signer
		return u
	}
	const matches = "upload_start.content_type_matches_kind"
	checkRules(t, []ruleCase{
		{"PNG signature", uploadStart(dispatchv1.ProofKind_PROOF_KIND_SIGNATURE, "image/png"), nil},
		{"JPEG photo", uploadStart(dispatchv1.ProofKind_PROOF_KIND_PHOTO, "image/jpeg"), nil},
		{"SVG signature", uploadStart(dispatchv1.ProofKind_PROOF_KIND_SIGNATURE, "image/svg+xml"), []string{"string.in", matches}},
		{"SVG photo", uploadStart(dispatchv1.ProofKind_PROOF_KIND_PHOTO, "image/svg+xml"), []string{"string.in", matches}},
		{"JPEG signature", uploadStart(dispatchv1.ProofKind_PROOF_KIND_SIGNATURE, "image/jpeg"), []string{matches}},
		{"barcode upload", uploadStart(dispatchv1.ProofKind_PROOF_KIND_BARCODE, "image/png"), []string{matches}},
		{"code upload", uploadStart(dispatchv1.ProofKind_PROOF_KIND_CODE, "image/png"), []string{matches}},
		{"capture an hour ago", withCapture(now.Add(-time.Hour)), nil},
		// Any capture time is taken (the domain keeps only a plausible one): a refused upload fails again at every retry.
		{"capture 8 days ago", withCapture(now.Add(-8 * 24 * time.Hour)), nil},
		{"capture in 2101", withCapture(time.Date(2101, 1, 1, 0, 0, 0, 0, time.UTC)), nil},
		{"signature with signer", signed(dispatchv1.ProofKind_PROOF_KIND_SIGNATURE, "image/png", "Ada Lovelace"), nil},
		{"photo with signer", signed(dispatchv1.ProofKind_PROOF_KIND_PHOTO, "image/png", "Ada"), []string{"upload_start.signer_name_for_signature"}},
		{"signer with a newline", signed(dispatchv1.ProofKind_PROOF_KIND_SIGNATURE, "image/png", "Ada\nLovelace"), []string{"string.pattern"}},
		{"signer of 201 characters", signed(dispatchv1.ProofKind_PROOF_KIND_SIGNATURE, "image/png", strings.Repeat("a", 201)), []string{"string.max_len"}},
	})
}

// TestDispatchTimeWindowRules checks the static bounds of TimeWindow, alone and inside CreateTaskRequest.
func TestDispatchTimeWindowRules(t *testing.T) {
	window := func(start, end time.Time) *dispatchv1.TimeWindow {
		return &dispatchv1.TimeWindow{StartTime: timestamppb.New(start), EndTime: timestamppb.New(end)}
	}
	create := func(w *dispatchv1.TimeWindow) *dispatchv1.CreateTaskRequest {
		stop := func() *dispatchv1.Stop {
			return &dispatchv1.Stop{Location: &geov1.LatLng{Latitude: 52.5, Longitude: 13.4}, Address: "Alexanderplatz 1"}
		}
		r := &dispatchv1.CreateTaskRequest{RequestId: "r1", Pickup: stop(), Dropoff: stop()}
		r.Pickup.TimeWindow = w
		return r
	}
	y2030 := time.Date(2030, 6, 1, 10, 0, 0, 0, time.UTC)
	y2101 := time.Date(2101, 3, 1, 10, 0, 0, 0, time.UTC)
	checkRules(t, []ruleCase{
		{"2030 window", window(y2030, y2030.Add(time.Hour)), nil},
		{"2101 window", window(y2101, y2101.Add(time.Hour)), []string{"timestamp.gte_lt", "timestamp.gte_lt"}},
		{"window from 1999", window(firstInstant.Add(-time.Hour), y2030), []string{"timestamp.gte_lt"}},
		{"reversed window", window(y2030, y2030.Add(-time.Hour)), []string{"time_window.end_after_start"}},
		{"year 1 to 9999", window(time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)), []string{"timestamp.gte_lt", "timestamp.gte_lt"}},
		{"CreateTask with a 2030 pickup window", create(window(y2030, y2030.Add(time.Hour))), nil},
		{"CreateTask with a 2101 pickup window", create(window(y2101, y2101.Add(time.Hour))), []string{"timestamp.gte_lt", "timestamp.gte_lt"}},
	})
}

// TestDispatchCommandRules checks the session commands: any occur_time, inline proofs, the
// release command and the hello's capabilities.
func TestDispatchCommandRules(t *testing.T) {
	now := time.Now()
	command := func(id string, set func(*dispatchv1.StreamAssignmentsRequest)) *dispatchv1.StreamAssignmentsRequest {
		r := &dispatchv1.StreamAssignmentsRequest{CommandId: id}
		set(r)
		return r
	}
	delivered := func(occur time.Time, proofs ...*dispatchv1.InlineProof) *dispatchv1.StreamAssignmentsRequest {
		return command("c1", func(r *dispatchv1.StreamAssignmentsRequest) {
			r.Kind = &dispatchv1.StreamAssignmentsRequest_Delivered{Delivered: &dispatchv1.ConfirmDelivery{
				TaskId: dispatchID, OccurTime: timestamppb.New(occur), InlineProofs: proofs,
			}}
		})
	}
	barcode := func(kind dispatchv1.ProofKind, v string) *dispatchv1.InlineProof {
		return &dispatchv1.InlineProof{Kind: kind, Value: &dispatchv1.InlineProof_Barcode{Barcode: v}}
	}
	code := func(kind dispatchv1.ProofKind, v string) *dispatchv1.InlineProof {
		return &dispatchv1.InlineProof{Kind: kind, Value: &dispatchv1.InlineProof_Code{Code: v}}
	}
	release := func(reason dispatchv1.ReleaseReason) *dispatchv1.StreamAssignmentsRequest {
		return command("c2", func(r *dispatchv1.StreamAssignmentsRequest) {
			r.Kind = &dispatchv1.StreamAssignmentsRequest_Release{Release: &dispatchv1.ReleaseTask{TaskId: dispatchID, Reason: reason}}
		})
	}
	hello := func(n int) *dispatchv1.StreamAssignmentsRequest {
		caps := make([]string, n)
		for i := range caps {
			caps[i] = fmt.Sprintf("feature-%d", i)
		}
		return command("", func(r *dispatchv1.StreamAssignmentsRequest) {
			r.Kind = &dispatchv1.StreamAssignmentsRequest_Hello{Hello: &dispatchv1.SessionHello{Capabilities: caps}}
		})
	}
	bc, cd := dispatchv1.ProofKind_PROOF_KIND_BARCODE, dispatchv1.ProofKind_PROOF_KIND_CODE
	checkRules(t, []ruleCase{
		{"delivered an hour ago", delivered(now.Add(-time.Hour)), nil},
		// Any event time is taken (the domain moves it into place): a refused command would end the session.
		{"delivered 2 days ago", delivered(now.Add(-48 * time.Hour)), nil},
		{"delivered 2 days ahead", delivered(now.Add(48 * time.Hour)), nil},
		{"delivered in 1970", delivered(time.Unix(0, 0)), nil},
		{"delivered with a barcode and a code", delivered(now, barcode(bc, "4006381333931"), code(cd, "0427")), nil},
		{"code of 3 digits", delivered(now, code(cd, "042")), []string{"string.pattern"}},
		{"code with a letter", delivered(now, code(cd, "04a7")), []string{"string.pattern"}},
		{"barcode of 129 characters", delivered(now, barcode(bc, strings.Repeat("1", 129))), []string{"string.max_len"}},
		{"barcode kind with a code", delivered(now, code(bc, "0427")), []string{"inline_proof.value_matches_kind"}},
		{"photo kind inline", delivered(now, barcode(dispatchv1.ProofKind_PROOF_KIND_PHOTO, "x")), []string{"enum.in", "inline_proof.value_matches_kind"}},
		{"inline proof without a value", delivered(now, &dispatchv1.InlineProof{Kind: cd}), []string{"inline_proof.value_matches_kind", "required"}},
		{"five inline proofs", delivered(now, code(cd, "0001"), code(cd, "0002"), code(cd, "0003"), code(cd, "0004"), code(cd, "0005")), []string{"repeated.max_items"}},
		{"release, parcel not ready", release(dispatchv1.ReleaseReason_RELEASE_REASON_PARCEL_NOT_READY), nil},
		{"release without a reason", release(dispatchv1.ReleaseReason_RELEASE_REASON_UNSPECIFIED), []string{"enum.not_in"}},
		{"release with an undefined reason", release(dispatchv1.ReleaseReason(6)), []string{"enum.defined_only"}},
		{"hello with 32 capabilities", hello(32), nil},
		{"hello with 33 capabilities", hello(33), []string{"repeated.max_items"}},
		{"hello with a negative epoch", command("", func(r *dispatchv1.StreamAssignmentsRequest) {
			r.Kind = &dispatchv1.StreamAssignmentsRequest_Hello{Hello: &dispatchv1.SessionHello{CursorEpoch: -1}}
		}), []string{"int64.gte"}},
		{"capability with a space", command("", func(r *dispatchv1.StreamAssignmentsRequest) {
			r.Kind = &dispatchv1.StreamAssignmentsRequest_Hello{Hello: &dispatchv1.SessionHello{Capabilities: []string{"route plans"}}}
		}), []string{"string.pattern"}},
	})
}

// TestDispatchProofRequirementRules checks CreateTaskRequest's proof requirements and parcel barcode.
func TestDispatchProofRequirementRules(t *testing.T) {
	req := func(barcode string, reqs ...*dispatchv1.ProofRequirement) *dispatchv1.CreateTaskRequest {
		stop := &dispatchv1.Stop{Location: &geov1.LatLng{Latitude: 52.5, Longitude: 13.4}, Address: "Alexanderplatz 1"}
		return &dispatchv1.CreateTaskRequest{RequestId: "r1", Pickup: stop, Dropoff: stop, ProofRequirements: reqs, ParcelBarcode: barcode}
	}
	rq := func(kind dispatchv1.ProofKind, stage dispatchv1.TaskStage) *dispatchv1.ProofRequirement {
		return &dispatchv1.ProofRequirement{Kind: kind, Stage: stage, Policy: dispatchv1.ProofPolicy_PROOF_POLICY_REQUIRED}
	}
	pickup, dropoff := dispatchv1.TaskStage_TASK_STAGE_PICKUP, dispatchv1.TaskStage_TASK_STAGE_DROPOFF
	photo, barcode, code := dispatchv1.ProofKind_PROOF_KIND_PHOTO, dispatchv1.ProofKind_PROOF_KIND_BARCODE, dispatchv1.ProofKind_PROOF_KIND_CODE
	nine := make([]*dispatchv1.ProofRequirement, 9)
	for i := range nine {
		nine[i] = rq(dispatchv1.ProofKind(1+i%4), dispatchv1.TaskStage(1+i%2))
	}
	checkRules(t, []ruleCase{
		{"no requirements", req(""), nil},
		{"barcode at pickup, code and photo at dropoff", req("PKG-0001", rq(barcode, pickup), rq(code, dropoff), rq(photo, dropoff)), nil},
		{"barcode requirement without parcel_barcode", req("", rq(barcode, pickup)), []string{"create_task.barcode_requirement_needs_parcel_barcode"}},
		{"two photos at the dropoff", req("", rq(photo, dropoff), rq(photo, dropoff)), []string{"create_task.proof_requirements_unique"}},
		{"requirement without a policy", req("", &dispatchv1.ProofRequirement{Kind: photo, Stage: dropoff}), []string{"enum.not_in"}},
		{"requirement without a stage", req("", &dispatchv1.ProofRequirement{Kind: photo, Policy: dispatchv1.ProofPolicy_PROOF_POLICY_OPTIONAL}), []string{"enum.not_in"}},
		{"nine requirements", req("PKG-0001", nine...), []string{"create_task.proof_requirements_unique", "repeated.max_items"}},
		{"parcel_barcode with a space", req("PKG 0001"), []string{"string.pattern"}},
	})
}
