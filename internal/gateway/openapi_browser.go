package gateway

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
)

// browserEventsDoc is where the session and event routes are described in full.
const browserEventsDoc = "docs/browser-events.md"

// errorResponse is the error answer of the routes the gateway writes itself: the REST error shape.
func errorResponse() map[string]any {
	return map[string]any{
		"description": `An error, as {"error": {"code": <HTTP status>, "status": "<gRPC code name>", "message": "...", "details": [...]}}.`,
		"schema":      map[string]any{},
	}
}

// op is one operation of the routes the gateway writes itself. public leaves out the document's bearer
// requirement (the operation needs no credentials, or takes them from the session cookies only);
// optional makes credentials optional (an empty alternative beside the bearer token).
type op struct {
	id, summary, description string
	public, optional         bool
	consumes, produces       []string
	parameters               []any
	responses                map[string]any
}

func (o op) item() map[string]any {
	responses := map[string]any{"default": errorResponse()}
	for code, r := range o.responses {
		responses[code] = r
	}
	m := map[string]any{
		"operationId": "Gateway_" + o.id,
		"summary":     o.summary,
		"description": o.description,
		"tags":        []string{"Gateway"},
		"responses":   responses,
	}
	if len(o.parameters) > 0 {
		m["parameters"] = o.parameters
	}
	if o.consumes != nil {
		m["consumes"] = o.consumes
	}
	if o.produces != nil {
		m["produces"] = o.produces
	}
	switch {
	case o.public:
		m["security"] = []any{}
	case o.optional:
		m["security"] = []any{map[string]any{"bearer": []any{}}, map[string]any{}}
	}
	return m
}

// response is a success response with a description and, when schema is not nil, a body.
func response(description string, schema map[string]any) map[string]any {
	r := map[string]any{"description": description}
	if schema != nil {
		r["schema"] = schema
	}
	return r
}

// object is the schema of a JSON object with the given properties.
func object(props map[string]any) map[string]any {
	return map[string]any{"type": "object", "properties": props}
}

func ref(definition string) map[string]any {
	return map[string]any{"$ref": "#/definitions/" + definition}
}

var dateTime = map[string]any{"type": "string", "format": "date-time"}

// documentBrowserRoutes adds the routes the gateway writes itself (browser.go, session.go, sse.go) to
// paths: the cookie session and the Server-Sent Events streams. Their query parameters are read from
// the request messages' descriptors, as populate reads them, so a field added to a watch request is
// documented without a change here.
func documentBrowserRoutes(paths map[string]any) {
	csrf := map[string]any{
		"name": csrfHeader, "in": "header", "type": "string", "required": true,
		"description": "The value of the lm_csrf cookie (the double-submit CSRF check).",
	}
	sessionBody := object(map[string]any{
		"user": ref("v1User"), "expiresAt": dateTime, "refreshTokenExpiresAt": dateTime,
		"csrfToken": map[string]any{"type": "string", "description": "The value of the lm_csrf cookie."},
	})
	cookies := "Cookies set: lm_access (the access token; HttpOnly, Path=/), lm_refresh (the refresh token; " +
		"HttpOnly, Path=/v1/session) and lm_csrf (readable by the page, echoed in the " + csrfHeader +
		" header of state-changing requests), all SameSite=Strict. See " + browserEventsDoc + "."
	paths[sessionPath] = map[string]any{
		"post": op{
			id:          "Login",
			summary:     "Login signs a browser in: identity's Login, with the tokens kept in cookies instead of the body.",
			description: "The body is a LoginRequest. " + cookies + "\n\nErrors: 400 for a malformed body, 401 for wrong credentials, 403 for a cross-origin request, 429 when rate limited.",
			public:      true,
			consumes:    []string{"application/json"},
			parameters:  []any{map[string]any{"name": "body", "in": "body", "required": true, "schema": ref("v1LoginRequest")}},
			responses:   map[string]any{"200": response("Signed in.", sessionBody)},
		}.item(),
		"get": op{
			id:          "WhoAmI",
			summary:     "WhoAmI returns the user signed in by the session cookie (or the bearer token), for a page that was reloaded.",
			description: "Errors: 401 without a session or when the access token expired (refresh, then ask again).",
			responses: map[string]any{"200": response("The signed-in user.", object(map[string]any{
				"user": ref("v1User"), "csrfToken": map[string]any{"type": "string", "description": "The value of the lm_csrf cookie, when present."},
			}))},
		}.item(),
		"delete": op{
			id:          "Logout",
			summary:     "Logout revokes the session's refresh token family (identity's Logout) and clears the cookies.",
			description: "Needs the " + csrfHeader + " header when the session cookies are present. Without a session it only clears them: it is idempotent.\n\nErrors: 403 when the CSRF check fails.",
			public:      true,
			parameters:  []any{map[string]any{"name": csrfHeader, "in": "header", "type": "string", "description": csrf["description"]}},
			responses:   map[string]any{"204": response("Signed out; the cookies are cleared.", nil)},
		}.item(),
	}
	paths[refreshPath] = map[string]any{
		"post": op{
			id:          "Refresh",
			summary:     "Refresh rotates the session's tokens with identity's RefreshToken, from the lm_refresh cookie.",
			description: "No body (or {}). Sets new lm_access and lm_refresh cookies.\n\nErrors: 401 when the refresh token is missing, expired, revoked or reused (the cookies are then cleared), 403 when the CSRF check fails.",
			public:      true,
			parameters:  []any{csrf},
			responses: map[string]any{"200": response("New tokens are in the cookies.", object(map[string]any{
				"expiresAt": dateTime, "refreshTokenExpiresAt": dateTime,
				"csrfToken": map[string]any{"type": "string", "description": "The value of the lm_csrf cookie."},
			}))},
		}.item(),
	}

	lastEventID := []any{
		map[string]any{"name": "Last-Event-ID", "in": "header", "type": "string", "description": "The id of the last event received, to resume after it (EventSource sends it when it reconnects). Ids are opaque."},
		map[string]any{"name": lastEventIDParam, "in": "query", "type": "string", "description": "Last-Event-ID as a query parameter, for clients that cannot set headers."},
	}
	stream := func(events string) map[string]any {
		return response("A text/event-stream of "+events+" A comment line every --sse-heartbeat keeps it open; after --sse-max-age the server ends it with a retry hint and a comment, and EventSource reconnects with Last-Event-ID, losing nothing. Errors before the stream starts are ordinary JSON errors with the REST status; later ones are a problem event.", nil)
	}
	eventErrors := "\n\nErrors: 400 for an unknown or malformed query parameter or Last-Event-ID, 401 without credentials, 429 when too many event streams are open (--sse-max-streams, --sse-max-streams-per-user)."

	taskParams := []any{map[string]any{"name": "id", "in": "path", "required": true, "type": "string", "description": "The task's id."}}
	taskParams = append(taskParams, queryParameters((&dispatchv1.WatchTaskRequest{}).ProtoReflect().Descriptor(), "", map[string]bool{"id": true})...)
	paths[taskEventsRoute] = map[string]any{
		"get": op{
			id:       "TaskEvents",
			summary:  "TaskEvents follows one task as Server-Sent Events, from DispatchService.WatchTask.",
			optional: true,
			description: "The query parameters are the fields of lastmile.dispatch.v1.WatchTaskRequest other than id, by JSON or proto name; " +
				"with shareToken the stream is answered to the token alone, without credentials. The session cookie (lm_access) is accepted instead of the Authorization header. " +
				"See " + browserEventsDoc + "." + eventErrors + " 404 when the task does not exist or the caller may not see it, as GET /v1/tasks/{id}.",
			produces:   []string{"text/event-stream"},
			parameters: append(taskParams, lastEventID...),
			responses:  map[string]any{"200": stream("events: task (data: a WatchTaskResponse), end (data: {}, after the task's final state; the stream then ends) and problem (data: a REST error).")},
		}.item(),
	}

	eventParams := queryParameters((&dispatchv1.WatchTasksRequest{}).ProtoReflect().Descriptor(), "", nil)
	eventParams = append(eventParams, map[string]any{
		"name": couriersParam, "in": "query", "type": "boolean",
		"description": "Also stream courier positions and statuses (CourierService.WatchCouriers): dispatchers and admins only (403 for others). A couriers.* parameter implies it.",
	})
	eventParams = append(eventParams, queryParameters((&courierv1.WatchCouriersRequest{}).ProtoReflect().Descriptor(), couriersPrefix, nil)...)
	paths[eventsPath] = map[string]any{
		"get": op{
			id:      "Events",
			summary: "Events follows the open tasks (and, on request, the couriers) as Server-Sent Events, from DispatchService.WatchTasks and CourierService.WatchCouriers.",
			description: "The query parameters are the fields of lastmile.dispatch.v1.WatchTasksRequest by JSON or proto name, couriers, and the fields of lastmile.courier.v1.WatchCouriersRequest prefixed with couriers. " +
				"The session cookie (lm_access) is accepted instead of the Authorization header. See " + browserEventsDoc + "." + eventErrors,
			produces:   []string{"text/event-stream"},
			parameters: append(eventParams, lastEventID...),
			responses:  map[string]any{"200": stream("events: open (data: {\"resumed\": bool}), task (data: a Task), snapshotComplete (data: a WatchTasksSnapshotComplete), courier (data: a WatchCouriersResponse) and problem (data: a REST error).")},
		}.item(),
	}
}

// documentShared makes credentials optional on GET /v1/tasks/{id}: with shareToken the task is answered to
// the token alone (GetTaskRequest.share_token).
func documentShared(paths map[string]any) error {
	item, _ := paths["/v1/tasks/{id}"].(map[string]any)
	get, _ := item["get"].(map[string]any)
	if get == nil {
		return fmt.Errorf("gateway: the OpenAPI document has no GET /v1/tasks/{id}")
	}
	params, _ := get["parameters"].([]any)
	for _, p := range params {
		if p, _ := p.(map[string]any); p["name"] == "shareToken" {
			get["security"] = []any{map[string]any{"bearer": []any{}}, map[string]any{}}
			return nil
		}
	}
	return fmt.Errorf("gateway: GET /v1/tasks/{id} has no shareToken parameter")
}

// maxQueryDepth bounds how deep queryParameters follows nested messages (a.b.c.d).
const maxQueryDepth = 4

// queryParameters returns the OpenAPI query parameters of md's fields, by JSON name after prefix, the way
// protoc-gen-openapiv2 documents a GET's request and populate reads it: scalars and enums as themselves,
// repeated ones as multi-valued, a Timestamp as a date-time string, other messages by their fields'
// dotted paths. skip names top-level fields (by proto name) that are not query parameters.
func queryParameters(md protoreflect.MessageDescriptor, prefix string, skip map[string]bool) []any {
	var out []any
	var walk func(md protoreflect.MessageDescriptor, prefix string, depth int)
	walk = func(md protoreflect.MessageDescriptor, prefix string, depth int) {
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			if depth == 0 && skip[string(fd.Name())] {
				continue
			}
			name := prefix + fd.JSONName()
			if fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() != timestampName && !fd.IsList() && !fd.IsMap() {
				if depth+1 < maxQueryDepth {
					walk(fd.Message(), name+".", depth+1)
				}
				continue
			}
			schema := fieldSchema(fd)
			if schema == nil {
				continue // a map or a list of messages: not expressible as query parameters
			}
			p := map[string]any{"name": name, "in": "query", "required": false}
			if fd.IsList() {
				p["type"], p["items"], p["collectionFormat"] = "array", schema, "multi"
			} else {
				for k, v := range schema {
					p[k] = v
				}
			}
			p["description"] = fmt.Sprintf("%s.%s.", md.FullName(), fd.Name())
			out = append(out, p)
		}
	}
	walk(md, prefix, 0)
	return out
}

var timestampName = (&timestamppb.Timestamp{}).ProtoReflect().Descriptor().FullName()

// fieldSchema is the OpenAPI type of one value of fd, as protoc-gen-openapiv2 writes it, or nil when fd
// cannot be a query parameter.
func fieldSchema(fd protoreflect.FieldDescriptor) map[string]any {
	if fd.IsMap() {
		return nil
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return map[string]any{"type": "string"}
	case protoreflect.BoolKind:
		return map[string]any{"type": "boolean"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return map[string]any{"type": "integer", "format": "int32"}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return map[string]any{"type": "integer", "format": "int64"}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return map[string]any{"type": "string", "format": "int64"}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return map[string]any{"type": "string", "format": "uint64"}
	case protoreflect.DoubleKind:
		return map[string]any{"type": "number", "format": "double"}
	case protoreflect.FloatKind:
		return map[string]any{"type": "number", "format": "float"}
	case protoreflect.BytesKind:
		return map[string]any{"type": "string", "format": "byte"}
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		names := make([]string, values.Len())
		for i := range values.Len() {
			names[i] = string(values.Get(i).Name())
		}
		return map[string]any{"type": "string", "enum": names}
	case protoreflect.MessageKind:
		if fd.Message().FullName() == timestampName {
			return dateTime
		}
	}
	return nil
}
