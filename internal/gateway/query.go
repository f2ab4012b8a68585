package gateway

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// queryParser is grpc-gateway's query parameter parser with its errors worded for people. grpc-gateway
// answers a value it cannot parse with Go's own words (`parsing field "page_size": strconv.ParseInt:
// parsing "abc": invalid syntax`, or `parsing list "states": "FOO" is not a valid value` without the
// values that are); queryParser names the parameter as it was sent and says what it takes: "pageSize
// must be an integer from -2147483648 to 2147483647 (got "abc")", "states must be one of TASK_STATE_PENDING,
// … (got "FOO")", like the body's errors (bodyError).
type queryParser struct{ runtime.DefaultQueryParser }

// Parse implements runtime.QueryParameterParser.
func (p *queryParser) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	err := p.DefaultQueryParser.Parse(msg, values, filter)
	if err == nil {
		return nil
	}
	// Find the parameter that fails on its own, in a fresh message, and word its error.
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	md := msg.ProtoReflect().Descriptor()
	for _, key := range keys {
		probe := msg.ProtoReflect().New().Interface()
		if p.DefaultQueryParser.Parse(probe, url.Values{key: values[key]}, filter) == nil {
			continue
		}
		parses := func(v string) bool {
			return p.DefaultQueryParser.Parse(msg.ProtoReflect().New().Interface(), url.Values{key: {v}}, filter) == nil
		}
		if fd := queryField(md, key); fd != nil {
			if s := queryValueError(key, fd, values[key], parses); s != "" {
				return errors.New(s)
			}
		}
		break
	}
	return err
}

// queryField returns the field a query parameter name sets (JSON or proto names, dotted into singular
// messages), or nil.
func queryField(md protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	var fd protoreflect.FieldDescriptor
	for part := range strings.SplitSeq(name, ".") {
		if md == nil {
			return nil
		}
		fd = md.Fields().ByTextName(part)
		if fd == nil {
			fd = md.Fields().ByJSONName(part)
		}
		if fd == nil {
			return nil
		}
		md = fd.Message()
	}
	return fd
}

// queryValueError says what the parameter key, which sets fd, takes, given the values sent; parses
// reports whether one value parses on its own. "" when it has nothing better to say than grpc-gateway.
func queryValueError(key string, fd protoreflect.FieldDescriptor, values []string, parses func(string) bool) string {
	if len(values) > 1 && !fd.IsList() {
		return fmt.Sprintf("%.64s may be given once, not %d times", key, len(values))
	}
	what := queryTakes(fd)
	if what == "" {
		return ""
	}
	got := values[0]
	if i := slices.IndexFunc(values, func(v string) bool { return !parses(v) }); i >= 0 {
		got = values[i] // the first value of a list that is not taken
	}
	if plus := strings.ReplaceAll(got, " ", "+"); plus != got && parses(plus) {
		// A time with a "+hh:mm" offset sent as is: a "+" in a query string is a space.
		return fmt.Sprintf("%.64s must be %s (got %.64q: a + in a query string stands for a space, so send the offset's + as %%2B)", key, what, got)
	}
	return fmt.Sprintf("%.64s must be %s (got %.64q)", key, what, got)
}

// queryTakes phrases what a query parameter of fd's type takes: "an integer from 0 to 4294967295", "one
// of A, B". "" for types it does not phrase.
func queryTakes(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return "an integer from -2147483648 to 2147483647"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return "an integer from -9223372036854775808 to 9223372036854775807"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "an integer from 0 to 4294967295"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "an integer from 0 to 18446744073709551615"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "a number"
	case protoreflect.BoolKind:
		return "true or false"
	case protoreflect.EnumKind:
		var names []string
		values := fd.Enum().Values()
		for i := range values.Len() {
			if v := values.Get(i); v.Number() != 0 {
				names = append(names, string(v.Name()))
			}
		}
		return "one of " + strings.Join(names, ", ")
	case protoreflect.MessageKind:
		switch fd.Message().FullName() {
		case "google.protobuf.Timestamp":
			return "a time in RFC 3339 format, such as 2026-01-02T15:04:05Z"
		case "google.protobuf.Duration":
			return "a duration in seconds with an s suffix, such as 30s"
		}
	}
	return ""
}
