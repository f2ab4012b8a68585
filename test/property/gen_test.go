package property_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// generator fills request messages with random field values from a fixed seed. In valid mode it follows
// the field's buf.validate rules where it can (bounds, lengths, uuid, email, enum sets, item counts,
// field-mask paths, timestamp ranges) and draws identifiers from pools of ones that exist, so that many
// requests get past validation into the handlers; otherwise it picks extremes: unset required fields,
// min and max timestamps and timestamps past them, huge and negative numbers, NaN and infinities,
// undefined enum values, empty, control-character and oversized strings. Either mode may still produce
// the other kind of request: validation decides, and the test counts both.
type generator struct {
	r *rand.Rand
	// ids are identifiers that exist in the system (users, couriers), used for uuid fields.
	ids []string
	// emails are registered emails, used for email fields.
	emails []string
	// now anchors valid timestamps near the services' clock.
	now time.Time
}

// maxDepth bounds the nesting of generated messages.
const maxDepth = 5

// message fills m; valid chooses the mode.
func (g *generator) message(m protoreflect.Message, valid bool, depth int) {
	md := m.Descriptor()
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		g.timestamp(m, nil, valid)
		return
	case "google.protobuf.Duration":
		g.duration(m, nil, valid)
		return
	}
	if depth > maxDepth {
		return
	}
	// One member per real oneof, chosen up front.
	chosen := map[protoreflect.FullName]protoreflect.Name{}
	oneofs := md.Oneofs()
	for i := range oneofs.Len() {
		o := oneofs.Get(i)
		if o.IsSynthetic() {
			continue
		}
		chosen[o.FullName()] = o.Fields().Get(g.r.IntN(o.Fields().Len())).Name()
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() && chosen[o.FullName()] != fd.Name() {
			continue
		}
		rules := fieldRules(fd)
		required := rules.GetRequired()
		switch {
		case valid && !required && g.r.IntN(5) == 0:
			continue // optional field left unset
		case !valid && g.r.IntN(4) == 0:
			continue // possibly a required field left unset
		}
		g.field(m, fd, rules, valid, depth)
	}
}

// fieldRules returns the buf.validate rules of fd, nil when it has none.
func fieldRules(fd protoreflect.FieldDescriptor) *validate.FieldRules {
	if fd.Options() == nil {
		return nil
	}
	r, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
	return r
}

func (g *generator) field(m protoreflect.Message, fd protoreflect.FieldDescriptor, rules *validate.FieldRules, valid bool, depth int) {
	switch {
	case fd.IsMap():
		mp := m.Mutable(fd).Map()
		for range g.r.IntN(3) {
			k := g.scalar(fd.MapKey(), nil, valid)
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v := mp.NewValue()
				g.message(v.Message(), valid, depth+1)
				mp.Set(k.MapKey(), v)
			} else {
				mp.Set(k.MapKey(), g.scalar(fd.MapValue(), nil, valid))
			}
		}
	case fd.IsList():
		rep := rules.GetRepeated()
		n := g.count(rep, valid)
		list := m.Mutable(fd).List()
		for range n {
			if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
				v := list.NewElement()
				g.messageWithRules(v.Message(), rep.GetItems(), valid, depth+1)
				list.Append(v)
			} else {
				list.Append(g.scalar(fd, rep.GetItems(), valid))
			}
		}
	case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
		g.messageWithRules(m.Mutable(fd).Message(), rules, valid, depth+1)
	default:
		m.Set(fd, g.scalar(fd, rules, valid))
	}
}

// count returns how many items a repeated field gets.
func (g *generator) count(rep *validate.RepeatedRules, valid bool) int {
	lo, hi := 0, 4
	if rep.HasMinItems() {
		lo = int(rep.GetMinItems())
	}
	if rep.HasMaxItems() {
		hi = min(int(rep.GetMaxItems()), lo+4)
	}
	if valid {
		return lo + g.r.IntN(hi-lo+1)
	}
	switch g.r.IntN(4) {
	case 0:
		return 0
	case 1:
		if rep.HasMaxItems() && rep.GetMaxItems() < 3000 {
			return int(rep.GetMaxItems()) + 1
		}
	}
	return g.r.IntN(6)
}

// messageWithRules fills a message-typed field whose rules may bound it (timestamps, durations, field
// masks).
func (g *generator) messageWithRules(m protoreflect.Message, rules *validate.FieldRules, valid bool, depth int) {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Timestamp":
		g.timestamp(m, rules.GetTimestamp(), valid)
	case "google.protobuf.Duration":
		g.duration(m, rules.GetDuration(), valid)
	case "google.protobuf.FieldMask":
		paths := m.Descriptor().Fields().ByName("paths")
		list := m.Mutable(paths).List()
		in := rules.GetFieldMask().GetIn()
		for range 1 + g.r.IntN(3) {
			if valid && len(in) > 0 {
				list.Append(protoreflect.ValueOfString(in[g.r.IntN(len(in))]))
			} else {
				list.Append(protoreflect.ValueOfString(g.wildString()))
			}
		}
	default:
		g.message(m, valid, depth)
	}
}

// Extremes of google.protobuf.Timestamp: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const (
	minTimestamp = -62135596800
	maxTimestamp = 253402300799
)

func (g *generator) timestamp(m protoreflect.Message, rules *validate.TimestampRules, valid bool) {
	var ts *timestamppb.Timestamp
	if valid {
		t := g.now.Add(time.Duration(g.r.Int64N(int64(60*24*time.Hour))) - 30*24*time.Hour)
		if rules.HasGte() && t.Before(rules.GetGte().AsTime()) || rules.HasLt() && !t.Before(rules.GetLt().AsTime()) {
			t = g.now
		}
		ts = timestamppb.New(t)
	} else {
		extremes := []*timestamppb.Timestamp{
			{Seconds: minTimestamp},
			{Seconds: minTimestamp + 1},
			{Seconds: maxTimestamp, Nanos: 999_999_999},
			{Seconds: maxTimestamp - 24*3600},
			{Seconds: maxTimestamp + 1},
			{Seconds: minTimestamp - 1},
			{Seconds: math.MaxInt64},
			{Seconds: math.MinInt64},
			{Seconds: 0},
			{Seconds: 1, Nanos: -1},
			{Seconds: 1, Nanos: 1_000_000_000},
			{Seconds: 946684799},  // just before 2000
			{Seconds: 4102444800}, // 2100
			timestamppb.New(g.now.Add(time.Duration(g.r.Int64()))),
		}
		ts = extremes[g.r.IntN(len(extremes))]
	}
	proto.Merge(m.Interface(), ts)
}

func (g *generator) duration(m protoreflect.Message, rules *validate.DurationRules, valid bool) {
	var d *durationpb.Duration
	if valid {
		hi := time.Hour
		if rules.HasLte() {
			hi = rules.GetLte().AsDuration()
		}
		d = durationpb.New(1 + time.Duration(g.r.Int64N(int64(hi))))
	} else {
		extremes := []*durationpb.Duration{
			{Seconds: 315_576_000_000, Nanos: 999_999_999},
			{Seconds: -315_576_000_000},
			{Seconds: math.MaxInt64},
			{Seconds: math.MinInt64},
			{Seconds: 0},
			{Seconds: 1, Nanos: -1},
			{Nanos: 1},
		}
		d = extremes[g.r.IntN(len(extremes))]
	}
	proto.Merge(m.Interface(), d)
}

// scalar returns a value for a non-message field (or list item, or map key or value) of fd's kind.
func (g *generator) scalar(fd protoreflect.FieldDescriptor, rules *validate.FieldRules, valid bool) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(g.r.IntN(2) == 0)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(g.enum(fd.Enum(), rules.GetEnum(), valid))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		r := rules.GetInt32()
		lo, hi := int64(math.MinInt32), int64(math.MaxInt32)
		if r.HasGte() {
			lo = int64(r.GetGte())
		}
		if r.HasGt() {
			lo = int64(r.GetGt()) + 1
		}
		if r.HasLte() {
			hi = int64(r.GetLte())
		}
		if r.HasLt() {
			hi = int64(r.GetLt()) - 1
		}
		return protoreflect.ValueOfInt32(int32(g.integer(lo, hi, valid)))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		r := rules.GetInt64()
		lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
		if r.HasGte() {
			lo = r.GetGte()
		}
		if r.HasLte() {
			hi = r.GetLte()
		}
		return protoreflect.ValueOfInt64(g.integer(lo, hi, valid))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		r := rules.GetUint32()
		hi := int64(math.MaxUint32)
		if r.HasLte() {
			hi = int64(r.GetLte())
		}
		return protoreflect.ValueOfUint32(uint32(g.integer(0, hi, valid)))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if !valid && g.r.IntN(2) == 0 {
			return protoreflect.ValueOfUint64(math.MaxUint64)
		}
		return protoreflect.ValueOfUint64(uint64(g.integer(0, math.MaxInt64, valid)))
	case protoreflect.FloatKind:
		r := rules.GetFloat()
		return protoreflect.ValueOfFloat32(float32(g.float(float64(r.GetGte()), float64(r.GetLte()), r.HasLte(), valid)))
	case protoreflect.DoubleKind:
		r := rules.GetDouble()
		lo, hi, bounded := -1e6, 1e6, false
		if r.HasGte() {
			lo = r.GetGte()
		}
		if r.HasLte() {
			hi, bounded = r.GetLte(), true
		}
		if r.HasLt() {
			hi, bounded = math.Nextafter(r.GetLt(), math.Inf(-1)), true
		}
		return protoreflect.ValueOfFloat64(g.float(lo, hi, bounded, valid))
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(g.string(rules.GetString(), valid))
	case protoreflect.BytesKind:
		b := make([]byte, g.r.IntN(64))
		for i := range b {
			b[i] = byte(g.r.UintN(256))
		}
		return protoreflect.ValueOfBytes(b)
	}
	return fd.Default()
}

func (g *generator) enum(ed protoreflect.EnumDescriptor, rules *validate.EnumRules, valid bool) protoreflect.EnumNumber {
	if !valid && g.r.IntN(2) == 0 {
		wild := []protoreflect.EnumNumber{0, -1, 99, math.MaxInt32, math.MinInt32}
		return wild[g.r.IntN(len(wild))]
	}
	values := ed.Values()
	var ok []protoreflect.EnumNumber
	for i := range values.Len() {
		n := values.Get(i).Number()
		excluded := false
		for _, x := range rules.GetNotIn() {
			excluded = excluded || protoreflect.EnumNumber(x) == n
		}
		if in := rules.GetIn(); len(in) > 0 {
			found := false
			for _, x := range in {
				found = found || protoreflect.EnumNumber(x) == n
			}
			excluded = excluded || !found
		}
		if !excluded {
			ok = append(ok, n)
		}
	}
	if len(ok) == 0 {
		return 0
	}
	return ok[g.r.IntN(len(ok))]
}

func (g *generator) integer(lo, hi int64, valid bool) int64 {
	if valid {
		// Mostly small values inside the bounds, where handlers do their work.
		a, b := max(lo, -1000), min(hi, 1000)
		if a > b {
			a, b = lo, hi
		}
		if b-a < 0 || b-a == math.MaxInt64 {
			return a
		}
		return a + g.r.Int64N(b-a+1)
	}
	wild := []int64{0, -1, 1, lo, hi, lo - 1, hi + 1, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64, g.r.Int64()}
	return wild[g.r.IntN(len(wild))]
}

func (g *generator) float(lo, hi float64, bounded, valid bool) float64 {
	if valid {
		if !bounded {
			hi = lo + 1e6
		}
		return lo + g.r.Float64()*(hi-lo)
	}
	wild := []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat64, -math.MaxFloat64,
		math.SmallestNonzeroFloat64, math.Copysign(0, -1), lo - 1e-9, hi + 1e-9, 1e300, -1e300}
	return wild[g.r.IntN(len(wild))]
}

// letters are the characters of valid generated strings: they satisfy every pattern of the contracts
// (usernames, no control characters) when the string starts with a letter.
const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

func (g *generator) string(rules *validate.StringRules, valid bool) string {
	if !valid && g.r.IntN(2) == 0 {
		return g.wildString()
	}
	switch {
	case rules.GetUuid():
		if len(g.ids) > 0 && g.r.IntN(3) != 0 {
			return g.ids[g.r.IntN(len(g.ids))]
		}
		return g.uuid()
	case rules.GetEmail():
		if len(g.emails) > 0 && g.r.IntN(2) == 0 {
			return g.emails[g.r.IntN(len(g.emails))]
		}
		return "p" + g.word(3, 12) + "@example.com"
	}
	lo, hi := 3, 24
	if rules.HasMinLen() {
		lo = max(lo, int(rules.GetMinLen()))
	}
	if rules.HasMaxLen() {
		hi = min(hi, int(rules.GetMaxLen()))
	}
	if len(rules.GetIn()) > 0 {
		return rules.GetIn()[g.r.IntN(len(rules.GetIn()))]
	}
	if hi < lo {
		hi = lo
	}
	return "a" + g.word(lo-1, hi-1)
}

// word returns letters of a length from lo to hi.
func (g *generator) word(lo, hi int) string {
	lo = max(lo, 0)
	n := lo
	if hi > lo {
		n += g.r.IntN(hi - lo + 1)
	}
	var b strings.Builder
	for range n {
		b.WriteByte(letters[g.r.IntN(len(letters))])
	}
	return b.String()
}

func (g *generator) uuid() string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := range 32 {
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b.WriteByte('-')
		}
		b.WriteByte(hex[g.r.IntN(16)])
	}
	return b.String()
}

// wildString returns a string no contract should accept everywhere: empty, oversized, control
// characters, non-ASCII, injection-looking, or a uuid in the wrong case. Always valid UTF-8, which proto3
// strings must be (a client refuses to send anything else).
func (g *generator) wildString() string {
	switch g.r.IntN(10) {
	case 0:
		return ""
	case 1:
		return strings.Repeat("x", 1+g.r.IntN(70_000))
	case 2:
		return "a\x00b\x1b[31m\r\n"
	case 3:
		return "ünïcödé 名前 🚚 " + g.word(0, 5)
	case 4:
		return "' OR 1=1; --"
	case 5:
		return strings.ToUpper(g.uuid())
	case 6:
		return "../../etc/passwd"
	case 7:
		return strings.Repeat("🚚", 1+g.r.IntN(300))
	case 8:
		return "%00%ff{}" + g.word(0, 3)
	}
	return g.word(0, 300)
}
