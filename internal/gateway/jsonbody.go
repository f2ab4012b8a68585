package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The request body decoder. grpc-gateway's JSONPb decoder first reads one JSON value with encoding/json,
// then hands its bytes to protojson; the errors that reach a client are either encoding/json's (without a
// position) or protojson's ("proto: (line 1:102): unknown field ..."), which grpc-gateway returns as the
// message of an InvalidArgument status. bodyDecoder decodes the whole body with protojson itself, so that
// every error has a line and column counted from the body's first byte and data after the JSON value is an
// error too, and words the errors for people: "the request body is not valid JSON: unexpected token }
// (line 1, column 17)".

// NewDecoder implements runtime.Marshaler: the gateway's own request body decoder (see bodyDecoder).
func (u undelimited) NewDecoder(r io.Reader) runtime.Decoder {
	return bodyDecoder{r: r, next: u.Marshaler, opts: unmarshalOptions(u.Marshaler)}
}

// unmarshalOptions digs the protojson options out of the marshaler the gateway configured, so that the
// decoder keeps its choices (unknown fields are an error).
func unmarshalOptions(m runtime.Marshaler) protojson.UnmarshalOptions {
	if hb, ok := m.(*runtime.HTTPBodyMarshaler); ok {
		m = hb.Marshaler
	}
	if pb, ok := m.(*runtime.JSONPb); ok {
		return pb.UnmarshalOptions
	}
	return protojson.UnmarshalOptions{}
}

type bodyDecoder struct {
	r    io.Reader
	next runtime.Marshaler
	opts protojson.UnmarshalOptions
}

// Decode reads the whole body (the gateway bounds it) and decodes it into v. An empty body is io.EOF,
// which the generated handlers treat as an empty message, as grpc-gateway's own decoder does.
func (d bodyDecoder) Decode(v any) error {
	body, err := io.ReadAll(d.r)
	if err != nil {
		// *http.MaxBytesError among others: the error handler answers 413 for it.
		return err
	}
	// A leading UTF-8 byte order mark is skipped, as RFC 8259 (section 8.1) lets a parser do: some
	// clients' JSON writers put one first (PowerShell's UTF8 encoding, .NET's UTF8Encoding(true)), and
	// refusing it answered "invalid value \ufeff (line 1, column 1)", naming an invisible character.
	body = bytes.TrimPrefix(body, []byte("\ufeff"))
	if len(bytes.TrimSpace(body)) == 0 {
		return io.EOF
	}
	msg := protoTarget(v)
	if msg == nil {
		// A body bound to a field that is not a message (a scalar or a list): grpc-gateway's decoder knows
		// those shapes; only its errors are reworded.
		if err := d.next.NewDecoder(bytes.NewReader(body)).Decode(v); err != nil {
			return bodyError(err, nil)
		}
		return nil
	}
	if err := d.opts.Unmarshal(body, msg); err != nil {
		if line, col, ok := trailingData(body); ok {
			return &jsonSyntaxError{msg: fmt.Sprintf("the request body is not valid JSON: unexpected data after the JSON value (line %d, column %d)", line, col)}
		}
		err = bodyError(err, msg.ProtoReflect().Descriptor())
		var syntax *jsonSyntaxError
		if errors.As(err, &syntax) && json.Valid(body) && wellKnownError.MatchString(syntax.msg) {
			// protojson names neither the field nor the format of a time or duration it cannot read
			// ("invalid google.protobuf.Timestamp value "2026-12-03"", "unexpected token 3600"): say both,
			// as a query parameter's error does.
			if hint := wellKnownHint(body, msg.ProtoReflect().Descriptor()); hint != "" {
				syntax.msg = "the request body does not match the request: " + hint + position(syntax.msg)
				return err
			}
		}
		if errors.As(err, &syntax) && json.Valid(body) {
			// protojson calls a value of the wrong type for a well-known type (a number for a Duration,
			// null for a Timestamp in a list) a syntax error; the body is valid JSON all the same.
			if rest, ok := strings.CutPrefix(syntax.msg, "the request body is not valid JSON: "); ok {
				syntax.msg = "the request body does not match the request: a value has the wrong type: " + rest
			}
		}
		return err
	}
	return nil
}

// trailingData reports whether body is one JSON value followed by more than white space, and where the
// rest begins (1-based line and column, in bytes).
func trailingData(body []byte) (line, col int, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	if dec.Decode(&v) != nil {
		return 0, 0, false
	}
	rest := int(dec.InputOffset())
	for rest < len(body) && (body[rest] == ' ' || body[rest] == '\t' || body[rest] == '\n' || body[rest] == '\r') {
		rest++
	}
	if rest >= len(body) {
		return 0, 0, false
	}
	line, col = 1, 1
	for _, c := range body[:rest] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col, true
}

// protoTarget returns the message v decodes into: v itself, or the message a **T points to (allocated
// when nil), as the generated handlers pass for a body bound to a message field. Anything else is nil.
func protoTarget(v any) proto.Message {
	if m, ok := v.(proto.Message); ok {
		return m
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Pointer {
		return nil
	}
	elem := rv.Elem()
	if !elem.Type().Implements(reflect.TypeFor[proto.Message]()) {
		return nil
	}
	if elem.IsNil() {
		elem.Set(reflect.New(elem.Type().Elem()))
	}
	m, _ := elem.Interface().(proto.Message)
	return m
}

// protojsonError matches protojson's errors: a "proto:" prefix (followed by a space or, chosen at random
// per process, a no-break space), an optional "syntax error", a position, and the detail.
var protojsonError = regexp.MustCompile(`^proto:[\s\x{00a0}]+(syntax error )?(?:\(line (\d+):(\d+)\): )?(.*)$`)

// bodyError words a decoding error for people. md, when known, is the message the body decodes into; an
// enum value it does not know is answered with the values it does.
func bodyError(err error, md protoreflect.MessageDescriptor) error {
	var syntax *jsonSyntaxError
	if errors.As(err, &syntax) {
		return err
	}
	text := err.Error()
	if errors.Is(err, io.ErrUnexpectedEOF) || strings.HasSuffix(text, "unexpected EOF") {
		return &jsonSyntaxError{msg: "the request body is not valid JSON: it ends before the JSON value is complete"}
	}
	m := protojsonError.FindStringSubmatch(text)
	if m == nil {
		return &jsonSyntaxError{msg: "the request body is not valid JSON: " + text}
	}
	kind := "the request body does not match the request: "
	if m[1] != "" {
		kind = "the request body is not valid JSON: "
	}
	detail := m[4]
	if md != nil {
		detail = enumHint(detail, md)
	}
	if m[2] != "" {
		detail += fmt.Sprintf(" (line %s, column %s)", m[2], m[3])
	}
	return &jsonSyntaxError{msg: kind + detail}
}

// jsonSyntaxError is a reworded body error; grpc-gateway turns it into InvalidArgument with its text.
type jsonSyntaxError struct{ msg string }

func (e *jsonSyntaxError) Error() string { return e.msg }

// invalidEnum matches protojson's "invalid value for enum field status: "AVAILABLE"".
var invalidEnum = regexp.MustCompile(`^invalid value for enum field (\w+): (.*)$`)

// enumHint rewords an unknown enum value: `status must be one of COURIER_STATUS_OFFLINE, ... (got
// "AVAILABLE")`, with the values from the descriptor of the field of that JSON name in md's tree.
func enumHint(detail string, md protoreflect.MessageDescriptor) string {
	m := invalidEnum.FindStringSubmatch(detail)
	if m == nil {
		return detail
	}
	ed := findEnum(md, m[1], map[protoreflect.FullName]bool{})
	if ed == nil {
		return detail
	}
	var names []string
	values := ed.Values()
	for i := range values.Len() {
		if v := values.Get(i); v.Number() != 0 {
			names = append(names, string(v.Name()))
		}
	}
	return fmt.Sprintf("%s must be one of %s (got %s)", m[1], strings.Join(names, ", "), m[2])
}

// findEnum returns the enum type of the first field named jsonName in md's tree.
func findEnum(md protoreflect.MessageDescriptor, jsonName string, seen map[protoreflect.FullName]bool) protoreflect.EnumDescriptor {
	if seen[md.FullName()] {
		return nil
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); fd.JSONName() == jsonName && fd.Enum() != nil {
			return fd.Enum()
		}
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if m := fd.Message(); m != nil {
			if ed := findEnum(m, jsonName, seen); ed != nil {
				return ed
			}
		}
	}
	return nil
}

// wellKnownError matches the body errors protojson gives for a time or duration it cannot read: a string
// that is not one, a duration out of range, or a value of another JSON type (which it calls a syntax
// error).
var wellKnownError = regexp.MustCompile(`invalid google\.protobuf\.(Timestamp|Duration) value|google\.protobuf\.Duration value out of range|unexpected token`)

// positionSuffix matches the " (line 1, column 117)" a body error ends with.
var positionSuffix = regexp.MustCompile(` \(line \d+, column \d+\)$`)

// position returns msg's position suffix, or "".
func position(msg string) string { return positionSuffix.FindString(msg) }

// wellKnownHint walks body (valid JSON) along md and words the first google.protobuf.Timestamp or
// google.protobuf.Duration value protojson would refuse: "pickup.timeWindow.startTime must be a time in
// RFC 3339 format, such as 2026-01-02T15:04:05Z (got "2026-12-03")". "" when there is none (the error was
// about something else).
func wellKnownHint(body []byte, md protoreflect.MessageDescriptor) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	hint, _ := wellKnownIn(dec, md, "")
	return hint
}

// wellKnownIn reads one JSON value from dec as a message of type md at path. It returns the hint of the
// first unreadable time or duration in it, or stops with ok false when the JSON does not have the shape
// of md (protojson's error is about that, not about a time).
func wellKnownIn(dec *json.Decoder, md protoreflect.MessageDescriptor, path string) (hint string, ok bool) {
	tok, err := dec.Token()
	if err != nil {
		return "", false
	}
	if tok == nil { // null: an unset message
		return "", true
	}
	if d, isDelim := tok.(json.Delim); !isDelim || d != '{' {
		return "", false
	}
	for dec.More() {
		keyTok, err := dec.Token()
		if err != nil {
			return "", false
		}
		key, _ := keyTok.(string)
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByTextName(key)
		}
		name := key
		if path != "" {
			name = path + "." + key
		}
		var hint string
		var ok bool
		switch {
		case fd == nil:
			ok = skipValue(dec)
		case fd.IsList():
			hint, ok = wellKnownList(dec, fd, name)
		case fd.IsMap():
			ok = skipValue(dec) // no map in the contracts holds a time or a duration
		default:
			hint, ok = wellKnownValue(dec, fd, name)
		}
		if hint != "" || !ok {
			return hint, ok
		}
	}
	_, err = dec.Token() // '}'
	return "", err == nil
}

// wellKnownList reads a JSON array of fd's values.
func wellKnownList(dec *json.Decoder, fd protoreflect.FieldDescriptor, name string) (string, bool) {
	tok, err := dec.Token()
	if err != nil {
		return "", false
	}
	if tok == nil {
		return "", true
	}
	if d, isDelim := tok.(json.Delim); !isDelim || d != '[' {
		return "", false
	}
	for i := 0; dec.More(); i++ {
		if hint, ok := wellKnownValue(dec, fd, fmt.Sprintf("%s[%d]", name, i)); hint != "" || !ok {
			return hint, ok
		}
	}
	_, err = dec.Token() // ']'
	return "", err == nil
}

// wellKnownValue reads one value of fd (a list's item for a list).
func wellKnownValue(dec *json.Decoder, fd protoreflect.FieldDescriptor, name string) (string, bool) {
	if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
		return "", skipValue(dec)
	}
	var want string
	var target proto.Message
	switch fd.Message().FullName() {
	case "google.protobuf.Timestamp":
		want, target = "a time in RFC 3339 format, such as 2026-01-02T15:04:05Z", &timestamppb.Timestamp{}
	case "google.protobuf.Duration":
		want, target = "a duration in seconds with an s suffix, such as 30s", &durationpb.Duration{}
	default:
		return wellKnownIn(dec, fd.Message(), name)
	}
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return "", false
	}
	if string(raw) == "null" || protojson.Unmarshal(raw, target) == nil {
		return "", true
	}
	got := []rune(string(raw))
	if len(got) > 64 {
		got = append(got[:64], '…')
	}
	return fmt.Sprintf("%s must be %s (got %s)", name, want, string(got)), true
}

// skipValue reads one JSON value from dec and drops it.
func skipValue(dec *json.Decoder) bool {
	var raw json.RawMessage
	return dec.Decode(&raw) == nil
}
