package property_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// restClient bounds every REST call of the test.
var restClient = &http.Client{Timeout: 10 * time.Second}

// httpRule returns the REST route of a unary method, nil when it has none.
func httpRule(m protoreflect.MethodDescriptor) *annotations.HttpRule {
	if m.IsStreamingClient() || m.IsStreamingServer() || m.Options() == nil {
		return nil
	}
	rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
	if rule.GetPattern() == nil {
		return nil
	}
	return rule
}

// pathParam matches one variable of a path template: {name} or {name=pattern}.
var pathParam = regexp.MustCompile(`\{([a-z_.]+)(=[^}]*)?\}`)

// restCall sends req to the gateway along rule as c would and returns the outcome as a gRPC code and
// message. It returns ok false when req has no JSON form (a timestamp beyond year 9999 cannot be written
// in RFC 3339), so the caller sends it over gRPC instead.
func (s *system) restCall(c caller, rule *annotations.HttpRule, req proto.Message) (code codes.Code, msg string, ok bool) {
	raw, err := protojson.MarshalOptions{UseProtoNames: false}.Marshal(req)
	if err != nil {
		return codes.OK, "", false
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		return codes.Unknown, fmt.Sprintf("decode own JSON: %v", err), true
	}
	var method, template string
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		method, template = http.MethodGet, p.Get
	case *annotations.HttpRule_Post:
		method, template = http.MethodPost, p.Post
	case *annotations.HttpRule_Put:
		method, template = http.MethodPut, p.Put
	case *annotations.HttpRule_Patch:
		method, template = http.MethodPatch, p.Patch
	case *annotations.HttpRule_Delete:
		method, template = http.MethodDelete, p.Delete
	default:
		return codes.OK, "", false
	}
	used := map[string]bool{}
	path := pathParam.ReplaceAllStringFunc(template, func(v string) string {
		name := pathParam.FindStringSubmatch(v)[1]
		used[jsonName(name)] = true
		val, _ := lookup(fields, name)
		return url.PathEscape(fmt.Sprint(val))
	})
	var body io.Reader = http.NoBody
	switch rule.GetBody() {
	case "":
		q := url.Values{}
		for k, v := range fields {
			if !used[k] {
				flatten(q, k, v)
			}
		}
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
	case "*":
		body = bytes.NewReader(raw)
	default:
		part, _ := json.Marshal(fields[jsonName(rule.GetBody())])
		body = bytes.NewReader(part)
	}
	hreq, err := http.NewRequest(method, "http://"+s.HTTP+path, body)
	if err != nil {
		return codes.Unknown, fmt.Sprintf("build request: %v", err), true
	}
	hreq.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := restClient.Do(hreq)
	if err != nil {
		return codes.Unknown, fmt.Sprintf("%s %s: %v", method, path, err), true
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated {
		return codes.OK, "", true
	}
	var e struct {
		Error struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(out, &e); err != nil || e.Error.Status == "" {
		if resp.StatusCode >= 500 {
			return codes.Internal, fmt.Sprintf("%s %s = %d %q", method, path, resp.StatusCode, truncate(string(out), 300)), true
		}
		return codes.InvalidArgument, fmt.Sprintf("%s %s = %d", method, path, resp.StatusCode), true
	}
	if err := code.UnmarshalJSON([]byte(`"` + e.Error.Status + `"`)); err != nil {
		return codes.Unknown, fmt.Sprintf("%s %s = %d with status %q", method, path, resp.StatusCode, e.Error.Status), true
	}
	if resp.StatusCode == http.StatusInternalServerError && code != codes.Internal && code != codes.Unknown && code != codes.DataLoss {
		return codes.Internal, fmt.Sprintf("%s %s = 500 with status %s", method, path, e.Error.Status), true
	}
	return code, e.Error.Message, true
}

// jsonName is the JSON name of a proto field path (lowerCamelCase per segment).
func jsonName(protoPath string) string {
	parts := strings.Split(protoPath, ".")
	for i, p := range parts {
		words := strings.Split(p, "_")
		for j := 1; j < len(words); j++ {
			if words[j] != "" {
				words[j] = strings.ToUpper(words[j][:1]) + words[j][1:]
			}
		}
		parts[i] = strings.Join(words, "")
	}
	return strings.Join(parts, ".")
}

// lookup returns the value at a dotted proto field path of a decoded JSON object.
func lookup(fields map[string]any, protoPath string) (any, bool) {
	var cur any = fields
	for _, k := range strings.Split(jsonName(protoPath), ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		if cur, ok = m[k]; !ok {
			return "", false
		}
	}
	return cur, true
}

// flatten adds v to q as grpc-gateway reads query parameters: nested objects as dotted names, lists as
// repeated parameters.
func flatten(q url.Values, key string, v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, inner := range v {
			flatten(q, key+"."+k, inner)
		}
	case []any:
		for _, inner := range v {
			flatten(q, key, inner)
		}
	default:
		q.Add(key, fmt.Sprint(v))
	}
}
