package grpctest

import (
	"context"
	"strings"

	"google.golang.org/grpc/metadata"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
)

// The metadata keys HeaderAuthenticator reads.
const (
	// UserKey carries a user principal's subject.
	UserKey = "x-test-user"
	// RolesKey carries the user's roles, comma-separated.
	RolesKey = "x-test-roles"
	// ServiceKey carries a service principal's name.
	ServiceKey = "x-test-service"
	// ViaKey carries the Via of any principal: the edge proxy or service that forwarded the call.
	ViaKey = "x-test-via"
)

// HeaderAuthenticator is a grpcauth.Authenticator for tests: it believes the metadata. "x-test-user: id"
// (with "x-test-roles: a,b") is a User, else "x-test-service: name" a Service, else the caller is
// Anonymous; "x-test-via: name" sets Via on any of them. It never fails. CallAs writes the metadata for a
// principal.
type HeaderAuthenticator struct{}

var _ grpcauth.Authenticator = HeaderAuthenticator{}

// Authenticate implements grpcauth.Authenticator.
func (HeaderAuthenticator) Authenticate(_ context.Context, md metadata.MD) (auth.Principal, error) {
	var p auth.Principal
	if v := md.Get(UserKey); len(v) == 1 {
		p = auth.Principal{Kind: auth.User, Subject: v[0]}
		if r := md.Get(RolesKey); len(r) == 1 && r[0] != "" {
			p.Roles = strings.Split(r[0], ",")
		}
	} else if v := md.Get(ServiceKey); len(v) == 1 {
		p = auth.Principal{Kind: auth.Service, Subject: v[0]}
	}
	if v := md.Get(ViaKey); len(v) == 1 {
		p.Via = v[0]
	}
	return p, nil
}

// CallAs returns ctx with outgoing metadata that HeaderAuthenticator turns back into p. An Anonymous p
// adds only its Via, if any.
func CallAs(ctx context.Context, p auth.Principal) context.Context {
	var kv []string
	switch p.Kind {
	case auth.User:
		kv = append(kv, UserKey, p.Subject)
		if len(p.Roles) > 0 {
			kv = append(kv, RolesKey, strings.Join(p.Roles, ","))
		}
	case auth.Service:
		kv = append(kv, ServiceKey, p.Subject)
	}
	if p.Via != "" {
		kv = append(kv, ViaKey, p.Via)
	}
	if len(kv) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}
