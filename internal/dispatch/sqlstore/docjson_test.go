package sqlstore

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
)

// everyFieldSet reports the path of the first field of v that is zero, looking into structs, pointers
// and every element of slices (times are leaves); "" when none is.
func everyFieldSet(v reflect.Value, path string) string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return path
		}
		return everyFieldSet(v.Elem(), path)
	case reflect.Slice:
		if v.Len() == 0 {
			return path
		}
		for i := range v.Len() {
			if p := everyFieldSet(v.Index(i), path+"[]"); p != "" {
				return p
			}
		}
		return ""
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			if v.IsZero() {
				return path
			}
			return ""
		}
		for i := range v.NumField() {
			if p := everyFieldSet(v.Field(i), path+"."+v.Type().Field(i).Name); p != "" {
				return p
			}
		}
		return ""
	default:
		if v.IsZero() {
			return path
		}
		return ""
	}
}

// docTask is a stored task with every field set (everyFieldSet), times in UTC to the microsecond.
func docTask() dispatch.Task {
	at := func(s int) time.Time { return time.Date(2031, 1, 2, 3, 4, s, 123456000, time.UTC) }
	return dispatch.Task{
		ID: "t1", CustomerID: "u1", CreatedBy: "u1", RequestID: "r1", RequestHash: "h1",
		State:     dispatch.StateOffered,
		CourierID: "c0",
		Pickup: dispatch.Stop{Location: geo.LatLng{Lat: 52.52, Lng: 13.405}, Address: "A <&> \u2028\u2029 \u00e9 \x7f", Window: &dispatch.Window{Start: at(1), End: at(2)},
			Contact: dispatch.Contact{Name: "Ada", Phone: "+4915112345678"}, Instructions: "ring \"twice\"\n\r\t\b\f\x00\x1f"},
		Dropoff: dispatch.Stop{Location: geo.LatLng{Lat: -0.000001, Lng: 1e-7}, Address: "B \ufffd \xff", Window: &dispatch.Window{Start: at(3), End: at(4)},
			Contact: dispatch.Contact{Name: "Bo", Phone: "+1"}, Instructions: "\\u0041 日本"},
		Priority: dispatch.PriorityUrgent, Size: dispatch.SizeLarge, Notes: "n",
		ProofRequirements: []dispatch.ProofRequirement{{Kind: dispatch.ProofPhoto, Stage: dispatch.StageDropoff, Policy: dispatch.ProofRequired}},
		ParcelBarcode:     "123", DeliveryCode: "9876",
		Offers: []dispatch.Offer{
			{ID: "o0", TaskID: "t1", CourierID: "c0", State: dispatch.OfferDeclined, CreateTime: at(5), ExpireTime: at(25), ResponseTimeout: 20 * time.Second,
				PickupETA: 90 * time.Second, PickupDistance: 1234.5678901234567, DecisionID: "d0", AnswerTime: at(6), DeclineReason: dispatch.DeclineTooFar, Comment: "far"},
			{ID: "o1", TaskID: "t1", CourierID: "c1", State: dispatch.OfferOpen, CreateTime: at(7), ExpireTime: at(27), ResponseTimeout: 1,
				PickupETA: -1, PickupDistance: 1e300, DecisionID: "d1", AnswerTime: at(8), DeclineReason: dispatch.DeclineOther, Comment: "c"},
		},
		Proofs: []dispatch.Proof{{UploadID: "up1", Kind: dispatch.ProofPhoto, Stage: dispatch.StagePickup, ContentType: "image/jpeg", SizeBytes: 1 << 40,
			SHA256: "ab", Value: "v", SignerName: "S", CaptureTime: at(8), CaptureLocation: &geo.LatLng{Lat: 1, Lng: -2.5e-8}, CreateTime: at(9)}},
		Excluded:      []dispatch.Exclusion{{CourierID: "c0", Reason: dispatch.ExcludedDeclined}},
		CancelReason:  dispatch.CancelOther,
		FailureReason: dispatch.FailureOther,
		History: []dispatch.StateChange{{State: dispatch.StatePending, At: at(0), Actor: dispatch.ActorCustomer, ActorUserID: "u1",
			CourierID: "c0", OfferID: "o0", Comment: "c"}},
		CreateTime: at(0), UpdateTime: at(7), AssignTime: at(10), PickupTime: at(11), DeliverTime: at(12), FinishTime: at(13),
		Version: math.MaxInt64, DueTime: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), SearchStart: at(0), Searches: 2, CodeAttempts: -1,
	}
}

// docDecision is a decision with every field set.
func docDecision() dispatch.Decision {
	return dispatch.Decision{
		ID: "d1", TaskID: "t1", DecideTime: time.Date(2031, 1, 2, 3, 4, 5, 6000, time.UTC), Trigger: dispatch.TriggerRetry, Outcome: dispatch.OutcomeOffered,
		Degraded: true, ETAProvider: "geodesic", DegradationDetail: "route <down>",
		Weights:      dispatch.Weights{ETA: 1, Distance: 0.25, Load: 0.5, Fairness: 0.2},
		SearchRadius: 3000,
		Candidates: []dispatch.Candidate{{
			CourierID: "c1", Rank: 1,
			Score: &dispatch.Score{PickupETA: 23 * time.Second, PickupDistance: 222.19502300430312, HeldWork: time.Minute, ActiveTasks: 3, Capacity: 10,
				Idle: 30 * time.Minute, ETAScore: 0.9630818619582665, DistanceScore: 1e-7, LoadScore: 0.5, FairnessScore: 1e21, Total: 1.8958424474118176},
			Excluded: dispatch.ExcludedDeclined, Mode: geo.Bicycle, Location: geo.LatLng{Lat: 52.50237638027258, Lng: 13.387796711049722},
			OfferID: "o1", OfferState: dispatch.OfferOpen, DeclineReason: dispatch.DeclineTooBusy,
		}},
		Winner: "c1", Rationale: "nearest", Elapsed: 1234567,
	}
}

// TestDocJSON: taskDoc and decisionDoc write exactly what json.Marshal writes, for values with every
// field set and for random strings and numbers; they decline what they cannot write the same way.
func TestDocJSON(t *testing.T) {
	task, decision := docTask(), docDecision()
	if p := everyFieldSet(reflect.ValueOf(task), "Task"); p != "" {
		t.Fatalf("docTask leaves %s zero: set it, so that its encoding is checked (and write it in taskDoc)", p)
	}
	if p := everyFieldSet(reflect.ValueOf(decision), "Decision"); p != "" {
		t.Fatalf("docDecision leaves %s zero: set it, so that its encoding is checked (and write it in decisionDoc)", p)
	}
	checkTask := func(what string, task dispatch.Task) {
		t.Helper()
		want, err := json.Marshal(task)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := taskDoc(&task); !ok || got != string(want) {
			t.Errorf("%s: taskDoc = %v,\n%s\nwant\n%s", what, ok, got, want)
		}
	}
	checkDecision := func(what string, d dispatch.Decision) {
		t.Helper()
		want, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := decisionDoc(&d); !ok || got != string(want) {
			t.Errorf("%s: decisionDoc = %v,\n%s\nwant\n%s", what, ok, got, want)
		}
	}
	checkTask("every field set", task)
	checkDecision("every field set", decision)
	checkTask("zero", dispatch.Task{})
	checkDecision("zero", dispatch.Decision{})
	empty := dispatch.Task{Offers: []dispatch.Offer{}, History: []dispatch.StateChange{}}
	checkTask("empty slices", empty)
	checkDecision("empty candidates", dispatch.Decision{Candidates: []dispatch.Candidate{{}}})

	rng := rand.New(rand.NewPCG(9, 9))
	pieces := []string{"a", "é", "日本", "\"", "\\", "<", ">", "&", "\u2028", "\u2029", "\ufffd", "\xff", "\xe2\x80", "\x00", "\x1f", "\x7f", "\n", "\t", "/", " "}
	randString := randomString(rng, pieces)
	randFloat := randomFloat(rng, []float64{0, math.Copysign(0, -1), 1e-6, 9.999999999999999e-7, 1e21, 9.999999999999999e20, math.MaxFloat64, math.SmallestNonzeroFloat64})
	for i := range 2000 {
		task.Notes, task.Pickup.Address, task.Offers[1].Comment = randString(), randString(), randString()
		task.Pickup.Location.Lat, task.Offers[0].PickupDistance = randFloat(), randFloat()
		task.Version, task.Searches = rng.Int64()-math.MaxInt64/2, rng.IntN(1000)-500
		task.CreateTime = time.Unix(rng.Int64N(253402300799), rng.Int64N(1e9)).UTC()
		checkTask("random task "+string(rune('0'+i%10)), task)
		decision.Rationale, decision.Candidates[0].CourierID = randString(), randString()
		decision.Candidates[0].Score.Total, decision.SearchRadius, decision.Weights.Load = randFloat(), randFloat(), randFloat()
		checkDecision("random decision", decision)
		if t.Failed() {
			break
		}
	}

	// What encoding/json refuses or writes otherwise: taskDoc and decisionDoc decline it.
	for name, bad := range map[string]func(*dispatch.Task){
		"NaN":        func(t *dispatch.Task) { t.Pickup.Location.Lat = math.NaN() },
		"infinity":   func(t *dispatch.Task) { t.Offers[0].PickupDistance = math.Inf(-1) },
		"year 10000": func(t *dispatch.Task) { t.DueTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"year -1":    func(t *dispatch.Task) { t.CreateTime = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) },
		"not UTC":    func(t *dispatch.Task) { t.History[0].At = time.Date(2031, 1, 1, 0, 0, 0, 0, time.FixedZone("X", 3600)) },
		"local":      func(t *dispatch.Task) { t.UpdateTime = time.Date(2031, 1, 1, 0, 0, 0, 0, time.Local) },
	} {
		task := docTask()
		bad(&task)
		if _, ok := taskDoc(&task); ok {
			t.Errorf("taskDoc(%s) = ok, want it declined", name)
		}
	}
	d := docDecision()
	d.Candidates[0].Score.ETAScore = math.NaN()
	if _, ok := decisionDoc(&d); ok {
		t.Errorf("decisionDoc(NaN score) = ok, want it declined")
	}
	if _, err := encodeDecision(&d); err == nil {
		t.Errorf("encodeDecision(NaN score) = nil error, want json.Marshal's")
	}
}

// randomString returns a generator of random strings of up to 7 of pieces, drawn from rng.
func randomString(rng *rand.Rand, pieces []string) func() string {
	return func() string {
		var b strings.Builder
		for range rng.IntN(8) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
}

// randomFloat returns a generator of random floats drawn from rng: of any magnitude, multiples of 1/8,
// subnormal, or one of specials.
func randomFloat(rng *rand.Rand, specials []float64) func() float64 {
	return func() float64 {
		switch rng.IntN(4) {
		case 0:
			return rng.NormFloat64() * math.Pow(10, float64(rng.IntN(60)-30))
		case 1:
			return float64(rng.IntN(1000)) / 8
		case 2:
			return math.Float64frombits(rng.Uint64() &^ (0x7ff << 52)) // subnormal
		default:
			return specials[rng.IntN(len(specials))]
		}
	}
}
