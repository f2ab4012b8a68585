package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// createdResponse is a forward-response option: a successful create (a POST, without a custom verb, of an
// RPC named Create* or Register*, answered with the resource it made, which has a string id; see
// routeTable) is answered 201 Created with a Location header naming the new resource, the collection path
// it was POSTed to plus its id (POST /v1/tasks -> Location: /v1/tasks/<id>). Other answers keep 200; a
// custom verb such as POST /v1/tasks/{id}:share creates nothing at a path of its own.
func createdResponse(ctx context.Context, w http.ResponseWriter, resp proto.Message) error {
	collection, ok := ctx.Value(createdPathKey{}).(string)
	if !ok {
		return nil
	}
	id := resourceID(resp)
	if id == "" {
		return nil
	}
	w.Header().Set("Location", strings.TrimSuffix(collection, "/")+"/"+url.PathEscape(id))
	w.WriteHeader(http.StatusCreated)
	return nil
}

// resourceID returns the string field "id" of a resource message, or "".
func resourceID(m proto.Message) string {
	if m == nil {
		return ""
	}
	msg := m.ProtoReflect()
	f := msg.Descriptor().Fields().ByName("id")
	if f == nil || f.Kind() != protoreflect.StringKind || f.Cardinality() == protoreflect.Repeated {
		return ""
	}
	return msg.Get(f).String()
}
