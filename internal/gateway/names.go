package gateway

import (
	"context"
	"strings"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// REST clients speak JSON names (transportMode); the services speak proto names (transport_mode), in their
// field violations and messages alike, because the gRPC contract is theirs. The gateway renames: for the
// RPC a request called, every field reachable from its request message whose JSON name differs from its
// proto name is renamed wherever it appears as a whole word in an error's message and field violations,
// including inside paths ("origins[2].transport_mode" becomes "origins[2].transportMode").

// renamer maps proto field names to JSON names for one request message type.
type renamer map[string]string

// renamers caches a renamer per RPC method name ("/lastmile.courier.v1.CourierService/UpdateCourier").
var renamers sync.Map

// renamerFor returns the renamer of the RPC that ctx's request called, or nil when there is none (a
// routing error, a method the registry does not know).
func renamerFor(ctx context.Context) renamer {
	method, ok := runtime.RPCMethod(ctx)
	if !ok {
		return nil
	}
	if r, ok := renamers.Load(method); ok {
		return r.(renamer)
	}
	in := requestDescriptor(method)
	if in == nil {
		return nil
	}
	r := renamer{}
	r.collect(in, map[protoreflect.FullName]bool{})
	renamers.Store(method, r)
	return r
}

// requestDescriptor finds the request message of a method named "/package.Service/Method".
func requestDescriptor(method string) protoreflect.MessageDescriptor {
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return nil
	}
	return md.Input()
}

// collect adds the fields of md and of every message reachable from it, each message type once.
func (r renamer) collect(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) {
	if seen[md.FullName()] {
		return
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if proto, json := string(fd.Name()), fd.JSONName(); proto != json {
			if _, taken := r[proto]; !taken {
				r[proto] = json
			}
		}
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if m := fd.Message(); m != nil {
			r.collect(m, seen)
		}
	}
}

// rename replaces every whole-word proto name in s with its JSON name. Text between backquotes (a
// regular expression quoted in a message) is left alone.
func (r renamer) rename(s string) string {
	if len(r) == 0 || !strings.Contains(s, "_") {
		return s
	}
	var b strings.Builder
	quoted := false
	for i := 0; i < len(s); {
		c := s[i]
		if c == '`' {
			quoted = !quoted
		}
		if !isWordByte(c) {
			b.WriteByte(c)
			i++
			continue
		}
		j := i
		for j < len(s) && isWordByte(s[j]) {
			j++
		}
		word := s[i:j]
		if json, ok := r[word]; ok && !quoted {
			word = json
		}
		b.WriteString(word)
		i = j
	}
	return b.String()
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// renameDetails renames the field paths and descriptions of BadRequest details; other details pass as
// they are.
func (r renamer) renameDetails(details []*anypb.Any) []*anypb.Any {
	if len(r) == 0 {
		return details
	}
	out := make([]*anypb.Any, 0, len(details))
	for _, d := range details {
		var br errdetails.BadRequest
		if d.MessageName() != badRequestName || d.UnmarshalTo(&br) != nil {
			out = append(out, d)
			continue
		}
		for _, v := range br.GetFieldViolations() {
			v.Field = r.rename(v.GetField())
			v.Description = r.rename(v.GetDescription())
		}
		renamed, err := anypb.New(&br)
		if err != nil {
			out = append(out, d)
			continue
		}
		out = append(out, renamed)
	}
	return out
}

var badRequestName = (&errdetails.BadRequest{}).ProtoReflect().Descriptor().FullName()
