package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// A field mask in the query string (PATCH /v1/couriers/{id}?updateMask=displayName,capacity) names fields
// the way its sender names them. A JSON body's mask uses JSON names ("updateMask": "displayName"), which
// protojson turns into proto names, but grpc-gateway passes query values through as they are, and the
// services check masks against proto names. maskQueryMiddleware gives the query string the body's rule:
// each path of a FieldMask parameter is converted from its JSON name to its proto name (displayName ->
// display_name, a.bC -> a.b_c), the conversion protojson applies to a FieldMask's JSON form. A proto name
// converts to itself, so REST callers may use either.

// maskParams returns the query parameter names, JSON and proto, of every FieldMask field of a request
// message in lastmile's contracts.
var maskParams = sync.OnceValue(func() map[string]bool {
	params := map[string]bool{}
	maskName := (&fieldmaskpb.FieldMask{}).ProtoReflect().Descriptor().FullName()
	protoregistry.GlobalFiles.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(f.Package()), "lastmile.") {
			return true
		}
		services := f.Services()
		for i := range services.Len() {
			methods := services.Get(i).Methods()
			for j := range methods.Len() {
				fields := methods.Get(j).Input().Fields()
				for k := range fields.Len() {
					fd := fields.Get(k)
					if m := fd.Message(); m != nil && m.FullName() == maskName {
						params[string(fd.Name())] = true
						params[fd.JSONName()] = true
					}
				}
			}
		}
		return true
	})
	return params
})

// maskQueryMiddleware rewrites the FieldMask query parameters of a matched route before its handler
// parses them.
func maskQueryMiddleware(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if r.URL.RawQuery != "" {
			if q, changed := protoMaskQuery(r.URL.RawQuery); changed {
				u := *r.URL
				u.RawQuery = q
				r = r.Clone(r.Context())
				r.URL = &u
			}
		}
		next(w, r, params)
	}
}

// protoMaskQuery converts the FieldMask parameters of a raw query; it reports whether anything changed.
// A query that does not parse is left for the handler to refuse.
func protoMaskQuery(raw string) (string, bool) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return raw, false
	}
	changed := false
	for key, values := range q {
		if !maskParams()[key] {
			continue
		}
		for i, v := range values {
			if p := protoMaskPaths(v); p != v {
				values[i], changed = p, true
			}
		}
	}
	if !changed {
		return raw, false
	}
	return q.Encode(), true
}

// protoMaskPaths converts a comma-separated list of mask paths from JSON names to proto names: every
// upper-case ASCII letter becomes "_" and its lower-case form, as protojson does.
func protoMaskPaths(paths string) string {
	if !strings.ContainsAny(paths, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		return paths
	}
	var b strings.Builder
	for i := 0; i < len(paths); i++ {
		c := paths[i]
		if 'A' <= c && c <= 'Z' {
			b.WriteByte('_')
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// maskConn is the connection the REST routes call a service through. A PATCH without a mask gets the one
// grpc-gateway infers from the body's fields, and from a body that holds none ({}) it infers a mask of one
// empty path, which the service would refuse as a path outside its list ("updateMask may only name …")
// although the caller named nothing; an empty updateMask in the query string ("?updateMask=") is read
// the same way. maskConn sends a mask whose paths are all empty as the empty mask it means, so that the
// caller hears that the request names no field to change, and which fields it may name.
type maskConn struct{ grpc.ClientConnInterface }

func (c maskConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if m, ok := args.(proto.Message); ok {
		emptyBlankMasks(m.ProtoReflect())
	}
	return c.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
}

// emptyBlankMasks clears the paths of the request's FieldMask fields whose paths are all "".
func emptyBlankMasks(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
			return true
		}
		mask, ok := v.Message().Interface().(*fieldmaskpb.FieldMask)
		if !ok || len(mask.GetPaths()) == 0 {
			return true
		}
		for _, p := range mask.GetPaths() {
			if p != "" {
				return true
			}
		}
		mask.Paths = nil
		return true
	})
}
