package sqlstore

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
)

// A decision's binary form: the protobuf wire format (google.golang.org/protobuf/encoding/protowire,
// no generated code) of the storage-private message below, after one byte naming the form
// (decisionBinV1). A field is written only when it is not zero (a float only when its bits are not
// zero, so that -0 stays -0); strings are bytes as they are; integers and durations are zigzag
// varints; floats are fixed64; a time is zigzag microseconds since 1970 UTC. It is about a third of
// the JSON document's size (a 20-candidate decision, 9.6 kB as JSON: see BENCHMARKS.md, session of
// 03:40), and a reader skips the fields it does not know, as protobuf does.
//
//	message Decision {
//	  string id = 1; string task_id = 2; sint64 decide_time = 3; string trigger = 4; string outcome = 5;
//	  bool degraded = 6; string eta_provider = 7; string degradation_detail = 8;
//	  double weight_eta = 9; double weight_distance = 10; double weight_load = 11; double weight_fairness = 12;
//	  double search_radius = 13; repeated Candidate candidates = 14; string winner = 15;
//	  string rationale = 16; sint64 elapsed = 17;
//	}
//	message Candidate {
//	  string courier_id = 1; sint64 rank = 2; Score score = 3; // present when Score is not nil
//	  string excluded = 4; string mode = 5; double lat = 6; double lng = 7; string offer_id = 8;
//	  string offer_state = 9; string decline_reason = 10;
//	}
//	message Score {
//	  sint64 pickup_eta = 1; double pickup_distance = 2; sint64 held_work = 3; sint64 active_tasks = 4;
//	  sint64 capacity = 5; sint64 idle = 6; double eta_score = 7; double distance_score = 8;
//	  double load_score = 9; double fairness_score = 10; double total = 11;
//	}
//
// A decision reads back from it exactly as from its JSON document: decisionBin declines what the JSON
// document would not give back as it was (a string that is not valid UTF-8, which encoding/json
// replaces; an empty but not nil candidate list; a NaN or infinite float or a time JSON cannot hold,
// which encoding/json refuses), and such a decision is stored as JSON, as before. Renaming a field of
// Decision changes nothing here; adding one needs a new field number (TestDecisionBin fails until it
// has one).

// decisionBinV1 is the first byte of the binary form above.
const decisionBinV1 = 1

// The field numbers of the messages above.
const (
	dbID protowire.Number = 1 + iota
	dbTaskID
	dbDecideTime
	dbTrigger
	dbOutcome
	dbDegraded
	dbETAProvider
	dbDegradationDetail
	dbWeightETA
	dbWeightDistance
	dbWeightLoad
	dbWeightFairness
	dbSearchRadius
	dbCandidate
	dbWinner
	dbRationale
	dbElapsed
)

const (
	cbCourierID protowire.Number = 1 + iota
	cbRank
	cbScore
	cbExcluded
	cbMode
	cbLat
	cbLng
	cbOfferID
	cbOfferState
	cbDeclineReason
)

const (
	sbPickupETA protowire.Number = 1 + iota
	sbPickupDistance
	sbHeldWork
	sbActiveTasks
	sbCapacity
	sbIdle
	sbETAScore
	sbDistanceScore
	sbLoadScore
	sbFairnessScore
	sbTotal
)

// binWriter appends a message; ok turns false at the first value whose JSON document would not read
// back as it is.
type binWriter struct {
	b  []byte
	ok bool
	// nul is whether a string holds a NUL character (Engine.RefuseNUL).
	nul bool
}

func (w *binWriter) str(n protowire.Number, s string) {
	if s == "" {
		return
	}
	if !utf8.ValidString(s) {
		w.ok = false
		return
	}
	if strings.IndexByte(s, 0) >= 0 {
		w.nul = true
	}
	w.b = protowire.AppendTag(w.b, n, protowire.BytesType)
	w.b = protowire.AppendString(w.b, s)
}

func (w *binWriter) int(n protowire.Number, v int64) {
	if v == 0 {
		return
	}
	w.b = protowire.AppendTag(w.b, n, protowire.VarintType)
	w.b = protowire.AppendVarint(w.b, protowire.EncodeZigZag(v))
}

func (w *binWriter) bool(n protowire.Number, v bool) {
	if v {
		w.b = protowire.AppendTag(w.b, n, protowire.VarintType)
		w.b = protowire.AppendVarint(w.b, 1)
	}
}

func (w *binWriter) float(n protowire.Number, f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		w.ok = false
		return
	}
	if bits := math.Float64bits(f); bits != 0 {
		w.b = protowire.AppendTag(w.b, n, protowire.Fixed64Type)
		w.b = protowire.AppendFixed64(w.b, bits)
	}
}

// time writes t, which must be as the store keeps times (UTC, to the microsecond) and within the years
// JSON holds.
func (w *binWriter) time(n protowire.Number, t time.Time) {
	if t.IsZero() {
		return
	}
	if t.Location() != time.UTC || t.Nanosecond()%1000 != 0 || t.Year() < 0 || t.Year() > 9999 {
		w.ok = false
		return
	}
	w.int(n, t.UnixMicro())
}

// message writes the message that body appends as field n, always (an empty message too).
func (w *binWriter) message(n protowire.Number, body func()) {
	w.b = protowire.AppendTag(w.b, n, protowire.BytesType)
	// The length comes first: leave two bytes for it (a candidate is 128 bytes or more, a score less)
	// and move the body when its length takes another number of bytes.
	const room = 2
	at := len(w.b)
	w.b = append(w.b, 0, 0)
	body()
	size := len(w.b) - at - room
	if k := protowire.SizeVarint(uint64(size)); k != room {
		if k > room {
			w.b = append(w.b, make([]byte, k-room)...)
		}
		copy(w.b[at+k:], w.b[at+room:at+room+size])
		w.b = w.b[:at+k+size]
	}
	protowire.AppendVarint(w.b[:at], uint64(size))
}

// decisionBin returns d's binary form, and false when d must be stored as JSON (see above); nul is
// whether one of its strings holds a NUL character.
func decisionBin(d *dispatch.Decision) (b []byte, ok, nul bool) {
	if d.Candidates != nil && len(d.Candidates) == 0 {
		return nil, false, false
	}
	w := binWriter{b: make([]byte, 0, 256+160*len(d.Candidates)), ok: true}
	w.b = append(w.b, decisionBinV1)
	w.str(dbID, d.ID)
	w.str(dbTaskID, d.TaskID)
	w.time(dbDecideTime, d.DecideTime)
	w.str(dbTrigger, string(d.Trigger))
	w.str(dbOutcome, string(d.Outcome))
	w.bool(dbDegraded, d.Degraded)
	w.str(dbETAProvider, d.ETAProvider)
	w.str(dbDegradationDetail, d.DegradationDetail)
	w.float(dbWeightETA, d.Weights.ETA)
	w.float(dbWeightDistance, d.Weights.Distance)
	w.float(dbWeightLoad, d.Weights.Load)
	w.float(dbWeightFairness, d.Weights.Fairness)
	w.float(dbSearchRadius, d.SearchRadius)
	for i := range d.Candidates {
		c := &d.Candidates[i]
		w.message(dbCandidate, func() {
			w.str(cbCourierID, c.CourierID)
			w.int(cbRank, int64(c.Rank))
			if s := c.Score; s != nil {
				w.message(cbScore, func() {
					w.int(sbPickupETA, int64(s.PickupETA))
					w.float(sbPickupDistance, s.PickupDistance)
					w.int(sbHeldWork, int64(s.HeldWork))
					w.int(sbActiveTasks, int64(s.ActiveTasks))
					w.int(sbCapacity, int64(s.Capacity))
					w.int(sbIdle, int64(s.Idle))
					w.float(sbETAScore, s.ETAScore)
					w.float(sbDistanceScore, s.DistanceScore)
					w.float(sbLoadScore, s.LoadScore)
					w.float(sbFairnessScore, s.FairnessScore)
					w.float(sbTotal, s.Total)
				})
			}
			w.str(cbExcluded, string(c.Excluded))
			w.str(cbMode, string(c.Mode))
			w.float(cbLat, c.Location.Lat)
			w.float(cbLng, c.Location.Lng)
			w.str(cbOfferID, c.OfferID)
			w.str(cbOfferState, string(c.OfferState))
			w.str(cbDeclineReason, string(c.DeclineReason))
		})
	}
	w.str(dbWinner, d.Winner)
	w.str(dbRationale, d.Rationale)
	w.int(dbElapsed, int64(d.Elapsed))
	return w.b, w.ok, w.nul
}

// errDecisionBin is a binary form that does not parse.
var errDecisionBin = errors.New("malformed binary decision")

// binReader reads the fields of one message.
type binReader struct {
	b   []byte
	err error
}

// next returns the next field's number and type, false at the end or at an error.
func (r *binReader) next() (protowire.Number, protowire.Type, bool) {
	if r.err != nil || len(r.b) == 0 {
		return 0, 0, false
	}
	n, t, k := protowire.ConsumeTag(r.b)
	if k < 0 {
		r.err = errDecisionBin
		return 0, 0, false
	}
	r.b = r.b[k:]
	return n, t, true
}

// take consumes the value of a field of type t, checking that the field has the type want; skip is
// take for a field not known.
func (r *binReader) take(n protowire.Number, t, want protowire.Type) []byte {
	if t != want {
		r.err = fmt.Errorf("%w: field %d has wire type %d", errDecisionBin, n, t)
		return nil
	}
	k := protowire.ConsumeFieldValue(n, t, r.b)
	if k < 0 {
		r.err = errDecisionBin
		return nil
	}
	v := r.b[:k]
	r.b = r.b[k:]
	return v
}

func (r *binReader) skip(n protowire.Number, t protowire.Type) { r.take(n, t, t) }

func (r *binReader) str(n protowire.Number, t protowire.Type) string {
	v, _ := protowire.ConsumeBytes(r.take(n, t, protowire.BytesType))
	return string(v)
}

func (r *binReader) message(n protowire.Number, t protowire.Type) binReader {
	v, _ := protowire.ConsumeBytes(r.take(n, t, protowire.BytesType))
	return binReader{b: v}
}

func (r *binReader) int(n protowire.Number, t protowire.Type) int64 {
	v, _ := protowire.ConsumeVarint(r.take(n, t, protowire.VarintType))
	return protowire.DecodeZigZag(v)
}

func (r *binReader) float(n protowire.Number, t protowire.Type) float64 {
	v, _ := protowire.ConsumeFixed64(r.take(n, t, protowire.Fixed64Type))
	return math.Float64frombits(v)
}

// decodeDecisionBin decodes a decision's binary form.
func decodeDecisionBin(b []byte) (dispatch.Decision, error) {
	var d dispatch.Decision
	if len(b) == 0 || b[0] != decisionBinV1 {
		return d, fmt.Errorf("%w: not in a form known", errDecisionBin)
	}
	r := binReader{b: b[1:]}
	for {
		n, t, ok := r.next()
		if !ok {
			break
		}
		switch n {
		case dbID:
			d.ID = r.str(n, t)
		case dbTaskID:
			d.TaskID = r.str(n, t)
		case dbDecideTime:
			d.DecideTime = time.UnixMicro(r.int(n, t)).UTC()
		case dbTrigger:
			d.Trigger = dispatch.Trigger(r.str(n, t))
		case dbOutcome:
			d.Outcome = dispatch.Outcome(r.str(n, t))
		case dbDegraded:
			d.Degraded = r.int(n, t) != 0
		case dbETAProvider:
			d.ETAProvider = r.str(n, t)
		case dbDegradationDetail:
			d.DegradationDetail = r.str(n, t)
		case dbWeightETA:
			d.Weights.ETA = r.float(n, t)
		case dbWeightDistance:
			d.Weights.Distance = r.float(n, t)
		case dbWeightLoad:
			d.Weights.Load = r.float(n, t)
		case dbWeightFairness:
			d.Weights.Fairness = r.float(n, t)
		case dbSearchRadius:
			d.SearchRadius = r.float(n, t)
		case dbCandidate:
			cr := r.message(n, t)
			d.Candidates = append(d.Candidates, cr.candidate())
			if cr.err != nil {
				r.err = cr.err
			}
		case dbWinner:
			d.Winner = r.str(n, t)
		case dbRationale:
			d.Rationale = r.str(n, t)
		case dbElapsed:
			d.Elapsed = time.Duration(r.int(n, t))
		default:
			r.skip(n, t)
		}
	}
	if r.err != nil {
		return dispatch.Decision{}, r.err
	}
	return d, nil
}

func (r *binReader) candidate() dispatch.Candidate {
	var c dispatch.Candidate
	for {
		n, t, ok := r.next()
		if !ok {
			return c
		}
		switch n {
		case cbCourierID:
			c.CourierID = r.str(n, t)
		case cbRank:
			c.Rank = int(r.int(n, t))
		case cbScore:
			sr := r.message(n, t)
			c.Score = sr.score()
			if sr.err != nil {
				r.err = sr.err
			}
		case cbExcluded:
			c.Excluded = dispatch.ExclusionReason(r.str(n, t))
		case cbMode:
			c.Mode = geo.TransportMode(r.str(n, t))
		case cbLat:
			c.Location.Lat = r.float(n, t)
		case cbLng:
			c.Location.Lng = r.float(n, t)
		case cbOfferID:
			c.OfferID = r.str(n, t)
		case cbOfferState:
			c.OfferState = dispatch.OfferState(r.str(n, t))
		case cbDeclineReason:
			c.DeclineReason = dispatch.DeclineReason(r.str(n, t))
		default:
			r.skip(n, t)
		}
	}
}

func (r *binReader) score() *dispatch.Score {
	var s dispatch.Score
	for {
		n, t, ok := r.next()
		if !ok {
			return &s
		}
		switch n {
		case sbPickupETA:
			s.PickupETA = time.Duration(r.int(n, t))
		case sbPickupDistance:
			s.PickupDistance = r.float(n, t)
		case sbHeldWork:
			s.HeldWork = time.Duration(r.int(n, t))
		case sbActiveTasks:
			s.ActiveTasks = int(r.int(n, t))
		case sbCapacity:
			s.Capacity = int(r.int(n, t))
		case sbIdle:
			s.Idle = time.Duration(r.int(n, t))
		case sbETAScore:
			s.ETAScore = r.float(n, t)
		case sbDistanceScore:
			s.DistanceScore = r.float(n, t)
		case sbLoadScore:
			s.LoadScore = r.float(n, t)
		case sbFairnessScore:
			s.FairnessScore = r.float(n, t)
		case sbTotal:
			s.Total = r.float(n, t)
		default:
			r.skip(n, t)
		}
	}
}
