package gateway

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// restRoute is what the gateway knows of one REST route from its google.api.http rule: the request message
// and where its fields come from.
type restRoute struct {
	request protoreflect.MessageDescriptor // the request message
	create  bool                           // a POST of a Create* or Register* RPC without a custom verb
	body    string                         // the rule's body: "*", a field name, or "" for none
	vars    []string                       // the path variables' field paths, such as "user.id"
}

// routeKey identifies a route as the mux reports it: method and runtime.Pattern.String().
type routeKey struct{ method, pattern string }

// routeTable maps every proto-bound route of the given services to its restRoute. Routes the gateway adds
// itself (/openapi.json, /docs, event streams) are not in it.
func routeTable(services []Service) (map[routeKey]restRoute, error) {
	table := map[routeKey]restRoute{}
	for _, s := range services {
		if s.Conn == nil {
			continue
		}
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(s.Name))
		if err != nil {
			return nil, fmt.Errorf("gateway: describe %s: %w", s.Name, err)
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			return nil, fmt.Errorf("gateway: %s is not a service", s.Name)
		}
		for i := range sd.Methods().Len() {
			m := sd.Methods().Get(i)
			rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
			if rule == nil || m.IsStreamingClient() {
				continue
			}
			for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
				method, template := httpRuleTarget(r)
				if template == "" {
					continue
				}
				pattern, vars := patternString(template)
				name := string(m.Name())
				create := method == http.MethodPost && !strings.Contains(template, ":") &&
					(strings.HasPrefix(name, "Create") || strings.HasPrefix(name, "Register"))
				table[routeKey{method, pattern}] = restRoute{request: m.Input(), create: create, body: r.GetBody(), vars: vars}
			}
		}
	}
	return table, nil
}

func httpRuleTarget(r *annotations.HttpRule) (method, template string) {
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return http.MethodGet, p.Get
	case *annotations.HttpRule_Post:
		return http.MethodPost, p.Post
	case *annotations.HttpRule_Put:
		return http.MethodPut, p.Put
	case *annotations.HttpRule_Patch:
		return http.MethodPatch, p.Patch
	case *annotations.HttpRule_Delete:
		return http.MethodDelete, p.Delete
	case *annotations.HttpRule_Custom:
		return p.Custom.GetKind(), p.Custom.GetPath()
	}
	return "", ""
}

var templateVar = regexp.MustCompile(`\{([^}=]+)(=[^}]*)?\}`)

// patternString renders a google.api.http path template the way runtime.Pattern.String does ("{id}"
// becomes "{id=*}") and returns its variables.
func patternString(template string) (string, []string) {
	var vars []string
	out := templateVar.ReplaceAllStringFunc(template, func(v string) string {
		m := templateVar.FindStringSubmatch(v)
		vars = append(vars, m[1])
		if m[2] == "" {
			return "{" + m[1] + "=*}"
		}
		return v
	})
	return out, vars
}

// createdPathKey carries the request path to createdResponse, which has no access to the request.
type createdPathKey struct{}

// strictMiddleware runs inside the mux once a proto-bound route has matched. It refuses, before any call:
//   - a body in another media type than JSON (415): a form-encoded body, curl -d's default, would
//     otherwise fail as "invalid JSON" and hide the real mistake; so would a compressed one
//     (Content-Encoding: gzip), also 415;
//   - query parameters the route does not read (400), as unknown body fields are: a misspelt filter must
//     not silently return everything;
//   - a write carrying an HTTP precondition (If-Match, If-None-Match, If-Unmodified-Since), which the
//     gateway does not evaluate (400): ignoring it would apply a change the client made conditional.
//     The precondition of a write is the etag field of its body.
func (g *Gateway) strictMiddleware(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		ctx := r.Context()
		if _, probe := ctx.Value(probeKey{}).(*bool); probe {
			next(w, r, params)
			return
		}
		// routeMiddleware, which runs first, recorded the route template (runtime.Pattern.String).
		state, _ := ctx.Value(requestStateKey{}).(*requestState)
		if state == nil {
			next(w, r, params)
			return
		}
		route, ok := g.restRoutes[routeKey{r.Method, state.route}]
		if !ok {
			next(w, r, params)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if msg := unreadPrecondition(route, r.Header); msg != "" {
				writeError(w, http.StatusBadRequest, codes.InvalidArgument, msg, nil)
				return
			}
		}
		if route.body != "" && carriesBody(r) {
			if encodedBody(w, r) {
				return
			}
			if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
				writeError(w, http.StatusUnsupportedMediaType, codes.InvalidArgument,
					fmt.Sprintf("the request body must be JSON (Content-Type: application/json), not %.100q", ct), nil)
				return
			}
		}
		if r.URL.RawQuery != "" {
			if err := checkQuery(route, r.URL.Query()); err != nil {
				writeError(w, http.StatusBadRequest, codes.InvalidArgument, err.Error(), nil)
				return
			}
		}
		if route.create {
			// createdResponse answers 201 with a Location under this collection path.
			r = r.WithContext(context.WithValue(ctx, createdPathKey{}, r.URL.EscapedPath()))
		}
		next(w, r, params)
	}
}

// preconditionHeaders are the HTTP preconditions that apply to a write (RFC 9110 section 13.1).
var preconditionHeaders = []string{"If-Match", "If-None-Match", "If-Unmodified-Since"}

// unreadPrecondition returns why a write carrying an HTTP precondition is refused, or "" when it carries
// none. A route whose request has an etag field (at its top or in the body's field, such as
// UpdateCourierRequest.courier.etag) is told to send the etag there.
func unreadPrecondition(route restRoute, h http.Header) string {
	for _, name := range preconditionHeaders {
		if len(h.Values(name)) == 0 {
			continue
		}
		_, hasEtag := fieldPath(route.request, "etag")
		if !hasEtag && route.body != "" && route.body != "*" {
			_, hasEtag = fieldPath(route.request, route.body+".etag")
		}
		if !hasEtag {
			return fmt.Sprintf("%s is not read: this route takes no precondition", name)
		}
		return fmt.Sprintf("%s is not read: send the etag you read in the request body's etag field (a change since is 409 ABORTED)", name)
	}
	return ""
}

// carriesBody reports whether the request carries a body: a positive Content-Length, or chunked encoding.
func carriesBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}

// mapKeyParam is grpc-gateway's syntax for a map entry in a query parameter: labels[key]=value.
var mapKeyParam = regexp.MustCompile(`^(.*)\[(.*)\]$`)

// checkQuery returns an error naming the first query parameter that route does not read. A parameter
// names a field of the request message by its JSON or proto name, with dots into singular nested
// messages ("pickup.location.latitude"), as grpc-gateway reads them. Fields that the path or the body
// set are not query parameters; a route whose body is "*" reads none.
func checkQuery(route restRoute, query map[string][]string) error {
	for key := range query {
		name := key
		if m := mapKeyParam.FindStringSubmatch(key); m != nil {
			name = m[1]
		}
		path, ok := fieldPath(route.request, name)
		switch {
		case !ok:
			return fmt.Errorf("unknown query parameter %.64q", key)
		case route.body == "*":
			return fmt.Errorf("query parameter %.64q is not accepted: this route reads every field from the JSON body", key)
		case coveredBy(path, route.body) || slices.ContainsFunc(route.vars, func(v string) bool { return coveredBy(path, v) || coveredBy(v, path) }):
			return fmt.Errorf("query parameter %.64q is not accepted: the path or the body sets it", key)
		}
	}
	return nil
}

// coveredBy reports whether the field path p lies within prefix (equal to it, or below it).
func coveredBy(p, prefix string) bool {
	return prefix != "" && (p == prefix || strings.HasPrefix(p, prefix+"."))
}

// fieldPath resolves a dotted query parameter name to the proto field path it sets, or reports false.
func fieldPath(md protoreflect.MessageDescriptor, name string) (string, bool) {
	var out []string
	parts := strings.Split(name, ".")
	for i, part := range parts {
		if md == nil {
			return "", false
		}
		f := md.Fields().ByTextName(part)
		if f == nil {
			f = md.Fields().ByJSONName(part)
		}
		if f == nil {
			return "", false
		}
		out = append(out, string(f.Name()))
		if i < len(parts)-1 {
			if f.Message() == nil || f.Cardinality() == protoreflect.Repeated {
				return "", false
			}
			md = f.Message()
		}
	}
	return strings.Join(out, "."), true
}
