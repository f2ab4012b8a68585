package grpcserver

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Violation messages are sentences for people ("transport_mode is required", "status must be one of
// COURIER_STATUS_OFFLINE, COURIER_STATUS_AVAILABLE, COURIER_STATUS_ON_BREAK"), generated from the rule
// that failed (its id, the rule's values as the contract declares them) and the field's descriptor (enum
// value names), so that a field added to a contract gets a good message without anyone writing one. The
// field is named by its proto path: gRPC callers see proto names, and the REST gateway renames them to
// their JSON names.

// knownPatterns phrase the regular expressions the contracts use for several fields. Any other pattern is
// quoted as it is: a regular expression cannot be turned into words in general.
var knownPatterns = map[string]string{
	`^[^\p{Cc}]*$`: "must not contain control characters",
	`^[!-~]+$`:     "must be printable ASCII characters without spaces",
}

// sentence returns the caller-facing description of one violation, starting with the field's path.
func sentence(v *protovalidate.Violation) string {
	field := protovalidate.FieldPathString(v.Proto.GetField())
	predicate := predicate(v)
	switch {
	case field == "":
		// A message-level rule (CEL): its own message names the fields it relates.
		return predicate
	case strings.HasPrefix(predicate, field+" "):
		return predicate
	}
	return field + " " + predicate
}

// predicate says what is wrong with the field, without naming it: "is required", "must be at most 100
// characters". It falls back on protovalidate's own message ("must be a valid UUID") for rules it does not
// know, and on the rule id when there is no message.
func predicate(v *protovalidate.Violation) string {
	id := v.Proto.GetRuleId()
	fallback := v.Proto.GetMessage()
	if fallback == "" {
		fallback = "violates rule " + id
	}
	if id == "required" {
		return "is required"
	}
	kind, rule, ok := strings.Cut(id, ".")
	if !ok {
		return fallback
	}
	if (kind == "string" || kind == "bytes") && strings.HasSuffix(rule, "_empty") {
		// string.uuid_empty, string.email_empty, ...: a well-formed value was required and none was sent.
		// Only these standard rules: a contract's own rule whose id ends so ("update_courier.mask_not_empty")
		// has its own message, which names its fields.
		return "is required"
	}
	rules := ruleMessage(v)
	switch kind {
	case "enum":
		if s := enumPredicate(v, rule, rules); s != "" {
			return s
		}
	case "string", "bytes":
		if s := lengthPredicate(kind, rule, rules); s != "" {
			return s
		}
	case "repeated":
		switch rule {
		case "min_items":
			return fmt.Sprintf("must contain at least %s", count(rules, "min_items", "item"))
		case "max_items":
			return fmt.Sprintf("must contain at most %s", count(rules, "max_items", "item"))
		case "unique":
			return "must not contain duplicates"
		}
	case "map":
		switch rule {
		case "min_pairs":
			return fmt.Sprintf("must contain at least %s", count(rules, "min_pairs", "entry"))
		case "max_pairs":
			return fmt.Sprintf("must contain at most %s", count(rules, "max_pairs", "entry"))
		}
	case "field_mask":
		if rule == "in" {
			return "may only name " + listOf(rules, "in")
		}
	case "timestamp":
		switch rule {
		case "within":
			return "must be within " + value(rules, "within") + " of the current time"
		case "gt_now":
			return "must be in the future"
		case "lt_now":
			return "must be in the past"
		}
	}
	if rule == "finite" {
		// Before the ranges: "finite" is no bound, and rangePredicate would phrase it "must be  true".
		return "must be a finite number"
	}
	if s := rangePredicate(rule, rules); s != "" {
		return s
	}
	return fallback
}

// fieldAt returns the field a violation's path names, walking it from the message md (through list items
// and map values), or nil when the path does not lead to a field.
func fieldAt(md protoreflect.MessageDescriptor, path *validate.FieldPath) protoreflect.FieldDescriptor {
	var fd protoreflect.FieldDescriptor
	for _, e := range path.GetElements() {
		if md == nil {
			return nil
		}
		fd = md.Fields().ByNumber(protoreflect.FieldNumber(e.GetFieldNumber()))
		if fd == nil {
			return nil
		}
		md = fd.Message()
		if fd.IsMap() {
			md = fd.MapValue().Message()
		}
	}
	return fd
}

// ruleMessage returns the rules message that holds the failed rule (buf.validate.Int32Rules for
// "int32.gte", the items' StringRules for "repeated.items.string.uuid"), or an invalid message when the
// violation does not say.
func ruleMessage(v *protovalidate.Violation) protoreflect.Message {
	if v.RuleDescriptor == nil || v.FieldDescriptor == nil {
		return nil
	}
	fieldRules := fieldRulesOf(v.FieldDescriptor)
	if fieldRules == nil {
		return nil
	}
	m := fieldRules
	elems := v.Proto.GetRule().GetElements()
	for _, e := range elems[:max(0, len(elems)-1)] {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(e.GetFieldName()))
		if fd == nil || fd.Message() == nil || fd.IsList() || fd.IsMap() || !m.Has(fd) {
			return nil
		}
		m = m.Get(fd).Message()
	}
	return m
}

// fieldRulesOf returns the field's (buf.validate.field) rules, or nil when it has none.
func fieldRulesOf(fd protoreflect.FieldDescriptor) protoreflect.Message {
	opts := fd.Options()
	if opts == nil || !proto.HasExtension(opts, validate.E_Field) {
		return nil
	}
	rules, ok := proto.GetExtension(opts, validate.E_Field).(*validate.FieldRules)
	if !ok || rules == nil {
		return nil
	}
	return rules.ProtoReflect()
}

func enumPredicate(v *protovalidate.Violation, rule string, rules protoreflect.Message) string {
	if v.FieldDescriptor == nil || v.FieldDescriptor.Enum() == nil {
		return ""
	}
	values := v.FieldDescriptor.Enum().Values()
	current := protoreflect.EnumNumber(-1 << 31)
	if v.FieldValue.IsValid() {
		if n, ok := v.FieldValue.Interface().(protoreflect.EnumNumber); ok {
			current = n
		}
	}
	var allowed []protoreflect.EnumNumber
	switch rule {
	case "in":
		allowed = numbers(rules, "in")
	case "not_in":
		excluded := numbers(rules, "not_in")
		if current == 0 && containsNumber(excluded, 0) {
			return "is required"
		}
		for i := range values.Len() {
			if n := values.Get(i).Number(); n != 0 && !containsNumber(excluded, n) {
				allowed = append(allowed, n)
			}
		}
	case "defined_only", "const":
		if rule == "const" && rules != nil {
			allowed = numbers(rules, "const")
			break
		}
		for i := range values.Len() {
			if n := values.Get(i).Number(); n != 0 {
				allowed = append(allowed, n)
			}
		}
	default:
		return ""
	}
	names := make([]string, 0, len(allowed))
	for _, n := range allowed {
		if ev := values.ByNumber(n); ev != nil {
			names = append(names, string(ev.Name()))
		} else {
			names = append(names, strconv.Itoa(int(n)))
		}
	}
	if len(names) == 0 {
		return ""
	}
	if len(names) == 1 {
		return "must be " + names[0]
	}
	return "must be one of " + strings.Join(names, ", ")
}

func lengthPredicate(kind, rule string, rules protoreflect.Message) string {
	unit := "character"
	if kind == "bytes" || strings.HasSuffix(rule, "_bytes") {
		unit = "byte"
	}
	switch rule {
	case "min_len", "min_bytes":
		if value(rules, rule) == "1" {
			return "is required"
		}
		return "must be at least " + count(rules, rule, unit)
	case "max_len", "max_bytes":
		return "must be at most " + count(rules, rule, unit)
	case "len", "len_bytes":
		return "must be exactly " + count(rules, rule, unit)
	case "uuid":
		return "must be a UUID"
	case "email":
		return "must be an email address"
	case "uri":
		return "must be an absolute URI"
	case "hostname":
		return "must be a host name"
	case "pattern":
		pattern := value(rules, "pattern")
		if s, ok := knownPatterns[pattern]; ok {
			return s
		}
		if pattern != "" {
			return "must match the pattern " + pattern
		}
	case "in":
		return "must be one of " + listOf(rules, "in")
	case "not_in":
		return "must not be one of " + listOf(rules, "not_in")
	case "prefix", "suffix", "contains":
		return fmt.Sprintf("must %s %q", map[string]string{"prefix": "start with", "suffix": "end with", "contains": "contain"}[rule], value(rules, rule))
	}
	return ""
}

// rangePredicate phrases the bounds of numbers, timestamps and durations: rule ids gte, lte, gt, lt and
// their combinations (gte_lte, gt_lt, ...), with the bounds read from the rules.
func rangePredicate(rule string, rules protoreflect.Message) string {
	if rules == nil {
		return ""
	}
	if rule == "const" {
		return "must be " + value(rules, "const")
	}
	lower, upper, ok := strings.Cut(rule, "_")
	if !ok {
		lower, upper = rule, ""
		if rule == "lt" || rule == "lte" {
			lower, upper = "", rule
		}
	}
	if strings.HasSuffix(upper, "_exclusive") {
		// gt_lt_exclusive and friends: the value must lie outside the range.
		upper = strings.TrimSuffix(upper, "_exclusive")
		return fmt.Sprintf("must be %s or %s", bound(rules, upper, true), bound(rules, lower, true))
	}
	switch {
	case lower == "gte" && upper == "lte":
		return fmt.Sprintf("must be between %s and %s", value(rules, "gte"), value(rules, "lte"))
	case lower != "" && upper != "":
		return fmt.Sprintf("must be %s and %s", bound(rules, lower, false), bound(rules, upper, false))
	case lower != "":
		return "must be " + bound(rules, lower, false)
	case upper != "":
		return "must be " + bound(rules, upper, false)
	}
	return ""
}

// bound phrases one bound: "at least 1", "less than 100". Inverted, for exclusive ranges, it phrases the
// opposite side ("less than 1" for gte 1).
func bound(rules protoreflect.Message, rule string, inverted bool) string {
	words := map[string]string{"gte": "at least", "gt": "greater than", "lte": "at most", "lt": "less than"}
	if inverted {
		words = map[string]string{"gte": "less than", "gt": "at most", "lte": "greater than", "lt": "at least"}
	}
	return words[rule] + " " + value(rules, rule)
}

// value renders the rule field name of rules for people: numbers as numbers, timestamps in RFC 3339,
// durations as Go durations ("24h0m0s").
func value(rules protoreflect.Message, name string) string {
	if rules == nil {
		return ""
	}
	fd := rules.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil || !rules.Has(fd) {
		return ""
	}
	return render(fd, rules.Get(fd))
}

func render(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	if fd.Message() != nil {
		switch m := v.Message().Interface().(type) {
		case *timestamppb.Timestamp:
			return m.AsTime().UTC().Format(time.RFC3339)
		case *durationpb.Duration:
			return m.AsDuration().String()
		}
		return ""
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case protoreflect.EnumKind:
		return strconv.Itoa(int(v.Enum()))
	}
	return fmt.Sprint(v.Interface())
}

// count renders a count with its unit: "1 character", "100 items".
func count(rules protoreflect.Message, name, unit string) string {
	n := value(rules, name)
	if n == "1" {
		return n + " " + unit
	}
	if unit == "entry" {
		return n + " entries"
	}
	return n + " " + unit + "s"
}

// listOf renders a repeated rule ("in", "not_in") as a comma-separated list.
func listOf(rules protoreflect.Message, name string) string {
	if rules == nil {
		return ""
	}
	fd := rules.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil || !fd.IsList() {
		return ""
	}
	list := rules.Get(fd).List()
	items := make([]string, list.Len())
	for i := range list.Len() {
		items[i] = render(fd, list.Get(i))
	}
	return strings.Join(items, ", ")
}

// numbers reads an enum rule's list of numbers ("in", "not_in", or the single "const").
func numbers(rules protoreflect.Message, name string) []protoreflect.EnumNumber {
	if rules == nil {
		return nil
	}
	fd := rules.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil || !rules.Has(fd) {
		return nil
	}
	if !fd.IsList() {
		return []protoreflect.EnumNumber{protoreflect.EnumNumber(rules.Get(fd).Int())}
	}
	list := rules.Get(fd).List()
	out := make([]protoreflect.EnumNumber, list.Len())
	for i := range list.Len() {
		out[i] = protoreflect.EnumNumber(list.Get(i).Int())
	}
	return out
}

func containsNumber(list []protoreflect.EnumNumber, n protoreflect.EnumNumber) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}
