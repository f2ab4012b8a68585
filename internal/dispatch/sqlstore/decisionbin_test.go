package sqlstore

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
)

// viaJSON returns d as it reads back from its JSON document: what a decision read back as before its
// binary form.
func viaJSON(t testing.TB, d dispatch.Decision) dispatch.Decision {
	t.Helper()
	doc, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var out dispatch.Decision
	if err := json.Unmarshal(doc, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameDecision reports whether a and b are equal (reflect.DeepEqual), and their floats bit for bit
// (DeepEqual takes -0 for 0; an answer's protobuf does not).
func sameDecision(a, b dispatch.Decision) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return reflect.DeepEqual(a, b) && erra == nil && errb == nil && string(ja) == string(jb)
}

// TestDecisionBin: a decision reads back from its binary form exactly as from its JSON document
// (reflect.DeepEqual), for values with every field set and random strings and numbers; what the JSON
// document would change or refuse, the binary form declines.
func TestDecisionBin(t *testing.T) {
	check := func(what string, d dispatch.Decision) {
		t.Helper()
		b, ok, _ := decisionBin(&d)
		if !ok {
			t.Errorf("%s: decisionBin declined it", what)
			return
		}
		got, err := decodeDecisionBin(b)
		if want := viaJSON(t, d); err != nil || !sameDecision(got, want) {
			t.Errorf("%s: decoded %v\n%#v\nwant\n%#v", what, err, got, want)
		}
	}
	d := docDecision()
	if p := everyFieldSet(reflect.ValueOf(d), "Decision"); p != "" {
		t.Fatalf("docDecision leaves %s zero: set it, so that its binary form is checked (and write it in decisionBin)", p)
	}
	check("every field set", d)
	check("zero", dispatch.Decision{})
	check("a zero candidate", dispatch.Decision{Candidates: []dispatch.Candidate{{}}})
	check("a zero score", dispatch.Decision{Candidates: []dispatch.Candidate{{Score: &dispatch.Score{}}, {}}})
	check("realistic", realisticDecision())
	long := realisticDecision()
	long.Rationale = strings.Repeat("x", 300)
	long.Candidates[0].CourierID = strings.Repeat("é", 100)
	check("long strings", long)
	long.Candidates[1].OfferID = strings.Repeat("o", 20000) // a candidate whose length takes three bytes
	check("a long candidate", long)

	rng := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "é", "日本", "\"", "\\", "<", "\u2028", "\ufffd", "\x00", "\x1f", "\x7f", "\n"}
	randString := randomString(rng, pieces)
	randFloat := randomFloat(rng, []float64{0, math.Copysign(0, -1), 1e21, -math.MaxFloat64, math.SmallestNonzeroFloat64})
	for range 2000 {
		d.Rationale, d.Candidates[0].CourierID, d.Candidates[0].OfferID = randString(), randString(), randString()
		d.Candidates[0].Score.Total, d.SearchRadius, d.Weights.Load, d.Candidates[0].Location.Lng = randFloat(), randFloat(), randFloat(), randFloat()
		d.Candidates[0].Score.PickupETA, d.Candidates[0].Rank = time.Duration(rng.Int64()-math.MaxInt64/2), rng.IntN(1<<20)-1<<19
		d.DecideTime = time.UnixMicro(rng.Int64N(253402300799e6+62135596800e6) - 62135596800e6).UTC()
		check("random", d)
		if t.Failed() {
			break
		}
	}

	// What JSON would not give back as it was, or refuses.
	for name, bad := range map[string]func(*dispatch.Decision){
		"not UTF-8":        func(d *dispatch.Decision) { d.Candidates[0].DeclineReason = "a\xffb" },
		"empty candidates": func(d *dispatch.Decision) { d.Candidates = []dispatch.Candidate{} },
		"NaN":              func(d *dispatch.Decision) { d.Candidates[0].Score.ETAScore = math.NaN() },
		"infinity":         func(d *dispatch.Decision) { d.Weights.ETA = math.Inf(-1) },
		"year 10000":       func(d *dispatch.Decision) { d.DecideTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"not UTC": func(d *dispatch.Decision) {
			d.DecideTime = time.Date(2031, 1, 1, 0, 0, 0, 0, time.FixedZone("X", 3600))
		},
		"nanoseconds": func(d *dispatch.Decision) { d.DecideTime = time.Date(2031, 1, 1, 0, 0, 0, 1, time.UTC) },
	} {
		d := docDecision()
		bad(&d)
		if _, ok, _ := decisionBin(&d); ok {
			t.Errorf("decisionBin(%s) = ok, want it declined", name)
		}
	}
	d = docDecision()
	if _, _, nul := decisionBin(&d); nul {
		t.Errorf("decisionBin(no NUL) reports a NUL")
	}
	d.Candidates[0].OfferState = "a\x00"
	if _, ok, nul := decisionBin(&d); !ok || !nul {
		t.Errorf("decisionBin(a NUL) = ok %v, nul %v; want both", ok, nul)
	}
}

// TestDecisionBinMalformed: a binary form cut short or of an unknown form is an error; a field not known
// (written by a later version) is skipped.
func TestDecisionBinMalformed(t *testing.T) {
	d := realisticDecision()
	b, _, _ := decisionBin(&d)
	for n := range len(b) - 1 {
		if _, err := decodeDecisionBin(b[:n]); err == nil && n > 0 {
			// A cut at a field's end is a shorter decision, and not an error; a cut inside one is.
			if got, _ := decodeDecisionBin(b[:n]); reflect.DeepEqual(got, viaJSON(t, d)) {
				t.Errorf("decodeDecisionBin(first %d of %d bytes) = the whole decision", n, len(b))
			}
		}
	}
	if _, err := decodeDecisionBin(b[:len(b)-1]); err == nil {
		t.Errorf("decodeDecisionBin(all but the last byte) = nil error, want one")
	}
	for _, bad := range [][]byte{nil, {}, {2}, append([]byte{0}, b[1:]...)} {
		if _, err := decodeDecisionBin(bad); err == nil {
			t.Errorf("decodeDecisionBin(%x) = nil error, want one", bad)
		}
	}
	// The id as a varint: a wire type the field does not have.
	wrong := protowire.AppendVarint(protowire.AppendTag([]byte{decisionBinV1}, dbID, protowire.VarintType), 1)
	if _, err := decodeDecisionBin(wrong); err == nil {
		t.Errorf("decodeDecisionBin(id as a varint) = nil error, want one")
	}
	later := append([]byte(nil), b...)
	later = protowire.AppendTag(later, 99, protowire.BytesType)
	later = protowire.AppendString(later, "later")
	later = protowire.AppendTag(later, 100, protowire.Fixed32Type)
	later = protowire.AppendFixed32(later, 7)
	if got, err := decodeDecisionBin(later); err != nil || !reflect.DeepEqual(got, viaJSON(t, d)) {
		t.Errorf("decodeDecisionBin(with fields not known) = %v, %v; want the decision", got, err)
	}
}

// realisticDecision is a decision as the engine makes them in the dispatch load test (bench/): 20
// candidates found near the pickup, 17 eligible and scored, 3 excluded, ids UUIDv7 text, floats with
// all their digits.
func realisticDecision() dispatch.Decision {
	rng := rand.New(rand.NewPCG(20, 26))
	id := func() string {
		return fmt.Sprintf("01a234db-%04x-7%03x-%04x-%012x", rng.IntN(1<<16), rng.IntN(1<<12), 0x8000|rng.IntN(1<<14), rng.Uint64()>>16)
	}
	d := dispatch.Decision{
		ID: id(), TaskID: id(), DecideTime: time.Date(2026, 12, 2, 3, 45, 47, 389250000, time.UTC), Trigger: dispatch.TriggerAutomatic,
		Outcome: dispatch.OutcomeOffered, ETAProvider: "geodesic", Weights: dispatch.DefaultWeights, SearchRadius: 3000,
		Elapsed: 145783,
	}
	excluded := []dispatch.ExclusionReason{dispatch.ExcludedOtherOffer, dispatch.ExcludedNoCapacity, dispatch.ExcludedDeclined}
	for i := range 20 {
		c := dispatch.Candidate{CourierID: id(), Mode: []geo.TransportMode{geo.Bicycle, geo.Car}[i%2],
			Location: geo.LatLng{Lat: 52.52 + rng.Float64()/20, Lng: 13.405 + rng.Float64()/20}}
		if i < 17 {
			eta := time.Duration(16+13*i) * time.Second
			etaScore := 1 / (1 + eta.Seconds()/600)
			dist := 60 * eta.Seconds() * (1 + rng.Float64()/10)
			c.Rank = i + 1
			c.Score = &dispatch.Score{PickupETA: eta, PickupDistance: dist, Capacity: 10, Idle: 30 * time.Minute,
				ETAScore: etaScore, DistanceScore: 0.25 / (1 + dist/1000), LoadScore: 0.5, FairnessScore: 0.2}
			c.Score.Total = c.Score.ETAScore + c.Score.DistanceScore + c.Score.LoadScore + c.Score.FairnessScore
		} else {
			c.Excluded = excluded[i-17]
		}
		d.Candidates = append(d.Candidates, c)
	}
	d.Candidates[0].OfferID = id()
	d.Winner = d.Candidates[0].CourierID
	d.Rationale = "earliest ETA to pickup (16s), 0 of 10 tasks held, best of 17 eligible"
	return d
}

// BenchmarkDecisionForms: a realistic decision's stored size and the CPU of its encoding and decoding, as
// a JSON document (before) and in binary form (now).
func BenchmarkDecisionForms(b *testing.B) {
	d := realisticDecision()
	doc, _ := decisionDoc(&d)
	bin, _, _ := decisionBin(&d)
	b.Run("json/encode", func(b *testing.B) {
		for b.Loop() {
			decisionDoc(&d)
		}
		b.ReportMetric(float64(len(doc)), "bytes/decision")
	})
	b.Run("json/decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeDecision([]byte(doc), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bin/encode", func(b *testing.B) {
		for b.Loop() {
			decisionBin(&d)
		}
		b.ReportMetric(float64(len(bin)), "bytes/decision")
	})
	b.Run("bin/decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeDecision(nil, bin); err != nil {
				b.Fatal(err)
			}
		}
	})
}
