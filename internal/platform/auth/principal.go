// Package auth decides who is calling and whether they may: the Principal a call runs as, the
// Authenticator that establishes it from the connection and the request metadata, and the per-method
// Policy that the server checks before any handler runs.
//
// # Principals
//
// A call runs as exactly one Principal. End users (and courier apps) are User principals, established by
// a bearer token in the "authorization" metadata. Services are Service principals, established by the
// verified SPIFFE identity of their mTLS client certificate (tlsutil.ServiceFromContext). Everything else
// is Anonymous.
//
// # Forwarded calls and the confused deputy
//
// A service that forwards an end user's request (the gateway, or dispatch acting for a courier) sends the
// user's token along. The user's token then decides authorization, never the forwarding service's
// identity: the call runs as the User, and Principal.Via records which service forwarded it, for logs and
// audits only. Otherwise a user could make the gateway perform, on their behalf, calls that only the
// gateway itself may make — the confused deputy problem.
//
// Edge proxies go one step further. The gateway carries the traffic of the public internet, so a call
// from the gateway WITHOUT a user token is Anonymous (with Via "gateway"), not a Service principal: the
// gateway's certificate proves where the bytes came from, not who asked for them. A method that only
// services may call is therefore unreachable through the gateway, whatever a browser sends. A service
// that must call another service as itself does so on its own connection without a user token.
//
// To forward a token, a service dials its peers with ForwardToken (a TokenForwarder): every call made with
// a context derived from the user's request carries the user's bearer token (TokenFrom), and the
// connection must use TLS, so that the token never crosses the network in plaintext.
//
// # Tokens
//
// Users authenticate with short-lived access tokens: JWTs signed with Ed25519 by the identity service and
// verified by every service with package jwt, against keys fetched from identity and cached. Refresh
// tokens are opaque, long-lived, and only the identity service ever sees or checks them. Passwords are
// hashed with package password. See those packages for the token format, the algorithm allow-list and
// key rotation.
//
// # Resource-level checks
//
// The Policy decides who may call a method; SelfOrRoles, OwnerOrRolesNotFound, RequireRoles and
// IsService decide, inside the domain service, who may touch one resource once its owner is known ("a
// courier may only act on their own offers and tasks").
//
// SelfOrRoles answers PermissionDenied to a caller who may not touch a resource: honest, and right when
// the resource's existence is no secret to that caller (it just saw the id in a list it may read, or the
// id is printed on a parcel label). OwnerOrRolesNotFound answers NotFound instead, exactly as if the
// resource did not exist: use it when existence itself is worth hiding, so that a caller probing ids
// cannot tell "exists, not yours" from "does not exist" (OWASP API1, broken object level authorization).
// Pick one per resource type and use it on every method of that type: a Get answering NotFound while the
// Update of the same id answers PermissionDenied reveals existence all the same.
package auth

import (
	"context"
	"slices"
)

// Kind says what sort of caller a Principal is.
type Kind int

// The kinds of principal.
const (
	// Anonymous is a caller that proved nothing: no token and no service certificate, or an edge proxy
	// forwarding a request without a user token.
	Anonymous Kind = iota
	// User is an end user (or a courier app) authenticated by a bearer token.
	User
	// Service is a lastmile service authenticated by its mTLS certificate.
	Service
)

// String returns "anonymous", "user" or "service".
func (k Kind) String() string {
	switch k {
	case Anonymous:
		return "anonymous"
	case User:
		return "user"
	case Service:
		return "service"
	}
	return "unknown"
}

// Principal is the identity a call runs as.
type Principal struct {
	// Kind says whether the caller is anonymous, a user or a service.
	Kind Kind
	// Subject is the user id for users and the service name for services; empty for anonymous callers.
	Subject string
	// Roles are the user's roles, such as RoleAdmin. Services and anonymous callers have none.
	Roles []string
	// Via names the service that forwarded the call (from its verified certificate), such as "gateway".
	// It is informational: it never grants anything.
	Via string
}

// HasRole reports whether p is a user holding role.
func (p Principal) HasRole(role string) bool {
	return p.Kind == User && slices.Contains(p.Roles, role)
}

type principalKey struct{}

// WithPrincipal returns a context carrying p. The server's authentication interceptor calls it; handlers
// read the principal back with FromContext.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal carried by ctx, or an Anonymous principal when there is none.
func FromContext(ctx context.Context) Principal {
	p, _ := ctx.Value(principalKey{}).(Principal)
	return p
}

// The user roles of lastmile, as they appear in access tokens' "roles" claim and in policy rules.
const (
	// RoleCustomer creates tasks and follows their own deliveries. Public sign-up creates customers only.
	RoleCustomer = "customer"
	// RoleCourier delivers tasks offered to them.
	RoleCourier = "courier"
	// RoleDispatcher runs operations: registers couriers, overrides assignments, sees every task.
	RoleDispatcher = "dispatcher"
	// RoleAdmin manages users and roles.
	RoleAdmin = "admin"
)
