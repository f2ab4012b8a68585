package sqlstore

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
)

// The documents of tasks and decisions, written without reflection. encoding/json spends most of an
// encode finding its way through the types, and a task is encoded in every write of it (a decision is
// stored in its binary form, decisionbin.go, and as JSON only when that form declines it). These
// functions write the same bytes encoding/json writes for the same value (fields in declaration order,
// under their Go names, strings escaped as encoding/json escapes them, HTML characters included,
// numbers formatted as it formats them), so a document reads the same whichever wrote it, and
// encoding/json stays the reader (decode). TestDocJSON compares them with json.Marshal on values with
// every field set: a field added to one of these types fails it until it is written here too. A value
// these functions cannot write as encoding/json would (a NaN or infinite float, a time outside years
// 0-9999 or not in UTC) makes them report failure, and encode falls back to json.Marshal, with its
// error.

// docWriter builds a document; ok turns false at the first value it cannot write as encoding/json
// would.
type docWriter struct {
	sb      strings.Builder
	scratch [64]byte
	ok      bool
}

func (w *docWriter) raw(s string) { w.sb.WriteString(s) }

// str writes s as encoding/json's appendString does with HTML escaping.
func (w *docWriter) str(s string) {
	const hex = "0123456789abcdef"
	w.sb.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			w.sb.WriteString(s[start:i])
			switch b {
			case '\\', '"':
				w.sb.WriteByte('\\')
				w.sb.WriteByte(b)
			case '\b':
				w.sb.WriteString(`\b`)
			case '\f':
				w.sb.WriteString(`\f`)
			case '\n':
				w.sb.WriteString(`\n`)
			case '\r':
				w.sb.WriteString(`\r`)
			case '\t':
				w.sb.WriteString(`\t`)
			default:
				w.sb.WriteString(`\u00`)
				w.sb.WriteByte(hex[b>>4])
				w.sb.WriteByte(hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			w.sb.WriteString(s[start:i])
			w.sb.WriteString(`\ufffd`)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			w.sb.WriteString(s[start:i])
			w.sb.WriteString(`\u202`)
			w.sb.WriteByte(hex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	w.sb.WriteString(s[start:])
	w.sb.WriteByte('"')
}

func (w *docWriter) int(v int64) { w.sb.Write(strconv.AppendInt(w.scratch[:0], v, 10)) }

func (w *docWriter) bool(v bool) {
	if v {
		w.raw("true")
	} else {
		w.raw("false")
	}
}

// float writes f as encoding/json's floatEncoder does for a float64.
func (w *docWriter) float(f float64) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		w.ok = false
		return
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b := strconv.AppendFloat(w.scratch[:0], f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	w.sb.Write(b)
}

// time writes t as time.Time's MarshalJSON does, for times in UTC within years 0-9999.
func (w *docWriter) time(t time.Time) {
	if t.Location() != time.UTC || t.Year() < 0 || t.Year() > 9999 {
		w.ok = false
		return
	}
	w.sb.WriteByte('"')
	w.sb.Write(t.AppendFormat(w.scratch[:0], time.RFC3339Nano))
	w.sb.WriteByte('"')
}

func (w *docWriter) latLng(p geo.LatLng) {
	w.raw(`{"Lat":`)
	w.float(p.Lat)
	w.raw(`,"Lng":`)
	w.float(p.Lng)
	w.raw(`}`)
}

func (w *docWriter) stop(s *dispatch.Stop) {
	w.raw(`{"Location":`)
	w.latLng(s.Location)
	w.raw(`,"Address":`)
	w.str(s.Address)
	w.raw(`,"Window":`)
	if s.Window == nil {
		w.raw("null")
	} else {
		w.raw(`{"Start":`)
		w.time(s.Window.Start)
		w.raw(`,"End":`)
		w.time(s.Window.End)
		w.raw(`}`)
	}
	w.raw(`,"Contact":{"Name":`)
	w.str(s.Contact.Name)
	w.raw(`,"Phone":`)
	w.str(s.Contact.Phone)
	w.raw(`},"Instructions":`)
	w.str(s.Instructions)
	w.raw(`}`)
}

// list writes a slice as encoding/json does: null when nil, each element by elem.
func list[T any](w *docWriter, s []T, elem func(*docWriter, *T)) {
	if s == nil {
		w.raw("null")
		return
	}
	w.raw("[")
	for i := range s {
		if i > 0 {
			w.raw(",")
		}
		elem(w, &s[i])
	}
	w.raw("]")
}

func (w *docWriter) task(t *dispatch.Task) {
	w.raw(`{"ID":`)
	w.str(t.ID)
	w.raw(`,"CustomerID":`)
	w.str(t.CustomerID)
	w.raw(`,"CreatedBy":`)
	w.str(t.CreatedBy)
	w.raw(`,"RequestID":`)
	w.str(t.RequestID)
	w.raw(`,"RequestHash":`)
	w.str(t.RequestHash)
	w.raw(`,"State":`)
	w.str(string(t.State))
	w.raw(`,"CourierID":`)
	w.str(t.CourierID)
	w.raw(`,"Pickup":`)
	w.stop(&t.Pickup)
	w.raw(`,"Dropoff":`)
	w.stop(&t.Dropoff)
	w.raw(`,"Priority":`)
	w.str(string(t.Priority))
	w.raw(`,"Size":`)
	w.str(string(t.Size))
	w.raw(`,"Notes":`)
	w.str(t.Notes)
	w.raw(`,"ProofRequirements":`)
	list(w, t.ProofRequirements, func(w *docWriter, r *dispatch.ProofRequirement) {
		w.raw(`{"Kind":`)
		w.str(string(r.Kind))
		w.raw(`,"Stage":`)
		w.str(string(r.Stage))
		w.raw(`,"Policy":`)
		w.str(string(r.Policy))
		w.raw(`}`)
	})
	w.raw(`,"ParcelBarcode":`)
	w.str(t.ParcelBarcode)
	w.raw(`,"DeliveryCode":`)
	w.str(t.DeliveryCode)
	w.raw(`,"Offers":`)
	list(w, t.Offers, func(w *docWriter, o *dispatch.Offer) {
		w.raw(`{"ID":`)
		w.str(o.ID)
		w.raw(`,"TaskID":`)
		w.str(o.TaskID)
		w.raw(`,"CourierID":`)
		w.str(o.CourierID)
		w.raw(`,"State":`)
		w.str(string(o.State))
		w.raw(`,"CreateTime":`)
		w.time(o.CreateTime)
		w.raw(`,"ExpireTime":`)
		w.time(o.ExpireTime)
		w.raw(`,"ResponseTimeout":`)
		w.int(int64(o.ResponseTimeout))
		w.raw(`,"PickupETA":`)
		w.int(int64(o.PickupETA))
		w.raw(`,"PickupDistance":`)
		w.float(o.PickupDistance)
		w.raw(`,"DecisionID":`)
		w.str(o.DecisionID)
		w.raw(`,"AnswerTime":`)
		w.time(o.AnswerTime)
		w.raw(`,"DeclineReason":`)
		w.str(string(o.DeclineReason))
		w.raw(`,"Comment":`)
		w.str(o.Comment)
		w.raw(`}`)
	})
	w.raw(`,"Proofs":`)
	list(w, t.Proofs, func(w *docWriter, p *dispatch.Proof) {
		w.raw(`{"UploadID":`)
		w.str(p.UploadID)
		w.raw(`,"Kind":`)
		w.str(string(p.Kind))
		w.raw(`,"Stage":`)
		w.str(string(p.Stage))
		w.raw(`,"ContentType":`)
		w.str(p.ContentType)
		w.raw(`,"SizeBytes":`)
		w.int(p.SizeBytes)
		w.raw(`,"SHA256":`)
		w.str(p.SHA256)
		w.raw(`,"Value":`)
		w.str(p.Value)
		w.raw(`,"SignerName":`)
		w.str(p.SignerName)
		w.raw(`,"CaptureTime":`)
		w.time(p.CaptureTime)
		w.raw(`,"CaptureLocation":`)
		if p.CaptureLocation == nil {
			w.raw("null")
		} else {
			w.latLng(*p.CaptureLocation)
		}
		w.raw(`,"CreateTime":`)
		w.time(p.CreateTime)
		w.raw(`}`)
	})
	w.raw(`,"Excluded":`)
	list(w, t.Excluded, func(w *docWriter, e *dispatch.Exclusion) {
		w.raw(`{"CourierID":`)
		w.str(e.CourierID)
		w.raw(`,"Reason":`)
		w.str(string(e.Reason))
		w.raw(`}`)
	})
	w.raw(`,"CancelReason":`)
	w.str(string(t.CancelReason))
	w.raw(`,"FailureReason":`)
	w.str(string(t.FailureReason))
	w.raw(`,"History":`)
	list(w, t.History, func(w *docWriter, h *dispatch.StateChange) {
		w.raw(`{"State":`)
		w.str(string(h.State))
		w.raw(`,"At":`)
		w.time(h.At)
		w.raw(`,"Actor":`)
		w.str(string(h.Actor))
		w.raw(`,"ActorUserID":`)
		w.str(h.ActorUserID)
		w.raw(`,"CourierID":`)
		w.str(h.CourierID)
		w.raw(`,"OfferID":`)
		w.str(h.OfferID)
		w.raw(`,"Comment":`)
		w.str(h.Comment)
		w.raw(`}`)
	})
	w.raw(`,"CreateTime":`)
	w.time(t.CreateTime)
	w.raw(`,"UpdateTime":`)
	w.time(t.UpdateTime)
	w.raw(`,"AssignTime":`)
	w.time(t.AssignTime)
	w.raw(`,"PickupTime":`)
	w.time(t.PickupTime)
	w.raw(`,"DeliverTime":`)
	w.time(t.DeliverTime)
	w.raw(`,"FinishTime":`)
	w.time(t.FinishTime)
	w.raw(`,"Version":`)
	w.int(t.Version)
	w.raw(`,"DueTime":`)
	w.time(t.DueTime)
	w.raw(`,"SearchStart":`)
	w.time(t.SearchStart)
	w.raw(`,"Searches":`)
	w.int(int64(t.Searches))
	w.raw(`,"CodeAttempts":`)
	w.int(int64(t.CodeAttempts))
	w.raw(`}`)
}

func (w *docWriter) decision(d *dispatch.Decision) {
	w.raw(`{"ID":`)
	w.str(d.ID)
	w.raw(`,"TaskID":`)
	w.str(d.TaskID)
	w.raw(`,"DecideTime":`)
	w.time(d.DecideTime)
	w.raw(`,"Trigger":`)
	w.str(string(d.Trigger))
	w.raw(`,"Outcome":`)
	w.str(string(d.Outcome))
	w.raw(`,"Degraded":`)
	w.bool(d.Degraded)
	w.raw(`,"ETAProvider":`)
	w.str(d.ETAProvider)
	w.raw(`,"DegradationDetail":`)
	w.str(d.DegradationDetail)
	w.raw(`,"Weights":{"ETA":`)
	w.float(d.Weights.ETA)
	w.raw(`,"Distance":`)
	w.float(d.Weights.Distance)
	w.raw(`,"Load":`)
	w.float(d.Weights.Load)
	w.raw(`,"Fairness":`)
	w.float(d.Weights.Fairness)
	w.raw(`},"SearchRadius":`)
	w.float(d.SearchRadius)
	w.raw(`,"Candidates":`)
	list(w, d.Candidates, func(w *docWriter, c *dispatch.Candidate) {
		w.raw(`{"CourierID":`)
		w.str(c.CourierID)
		w.raw(`,"Rank":`)
		w.int(int64(c.Rank))
		w.raw(`,"Score":`)
		if s := c.Score; s == nil {
			w.raw("null")
		} else {
			w.raw(`{"PickupETA":`)
			w.int(int64(s.PickupETA))
			w.raw(`,"PickupDistance":`)
			w.float(s.PickupDistance)
			w.raw(`,"HeldWork":`)
			w.int(int64(s.HeldWork))
			w.raw(`,"ActiveTasks":`)
			w.int(int64(s.ActiveTasks))
			w.raw(`,"Capacity":`)
			w.int(int64(s.Capacity))
			w.raw(`,"Idle":`)
			w.int(int64(s.Idle))
			w.raw(`,"ETAScore":`)
			w.float(s.ETAScore)
			w.raw(`,"DistanceScore":`)
			w.float(s.DistanceScore)
			w.raw(`,"LoadScore":`)
			w.float(s.LoadScore)
			w.raw(`,"FairnessScore":`)
			w.float(s.FairnessScore)
			w.raw(`,"Total":`)
			w.float(s.Total)
			w.raw(`}`)
		}
		w.raw(`,"Excluded":`)
		w.str(string(c.Excluded))
		w.raw(`,"Mode":`)
		w.str(string(c.Mode))
		w.raw(`,"Location":`)
		w.latLng(c.Location)
		w.raw(`,"OfferID":`)
		w.str(c.OfferID)
		w.raw(`,"OfferState":`)
		w.str(string(c.OfferState))
		w.raw(`,"DeclineReason":`)
		w.str(string(c.DeclineReason))
		w.raw(`}`)
	})
	w.raw(`,"Winner":`)
	w.str(d.Winner)
	w.raw(`,"Rationale":`)
	w.str(d.Rationale)
	w.raw(`,"Elapsed":`)
	w.int(int64(d.Elapsed))
	w.raw(`}`)
}

// taskDoc returns t's document as encoding/json writes it, and false when it cannot write it the same
// way (see docWriter).
func taskDoc(t *dispatch.Task) (string, bool) {
	w := docWriter{ok: true}
	w.sb.Grow(2048 + 512*len(t.Offers) + 256*len(t.History))
	w.task(t)
	return w.sb.String(), w.ok
}

// decisionDoc is taskDoc for a decision.
func decisionDoc(d *dispatch.Decision) (string, bool) {
	w := docWriter{ok: true}
	w.sb.Grow(512 + 512*len(d.Candidates))
	w.decision(d)
	return w.sb.String(), w.ok
}
