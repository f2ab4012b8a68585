// Package auth says who is calling and what they may call, without any transport: the Principal a call
// runs as, the roles of lastmile's users, the context helpers that carry a principal from the server's
// interceptor to the domain, the per-method authorization Policy, and the TokenVerifier contract between
// the token format (package jwt) and an authenticator.
//
// Domain packages import auth and nothing below it: establishing a principal from a gRPC connection
// (bearer tokens in metadata, service certificates, edge proxies, client addresses) is package grpcauth's
// job, so that a domain package never depends on gRPC. A layering test (internal/layering_test.go) keeps
// it that way.
//
// # Principals
//
// A call runs as exactly one Principal. End users (and courier apps) are User principals, established by
// a bearer token. Services are Service principals, established by the verified SPIFFE identity of their
// mTLS client certificate. Everything else is Anonymous. A principal forwarded by a service records that
// service in Via, for logs and audits only: it never grants anything (see package grpcauth on forwarded
// calls and the confused deputy).
//
// # Tokens
//
// Users authenticate with short-lived access tokens: JWTs signed with Ed25519 by the identity service and
// verified by every service with package jwt, against keys fetched from identity and cached. Refresh
// tokens are opaque, long-lived, and only the identity service ever sees or checks them. Passwords are
// hashed with package password. See those packages for the token format, the algorithm allow-list and
// key rotation.
//
// # Authorization
//
// The Policy decides who may call a method, before any handler runs; the server checks it with the
// principal its authenticator established. Which resource a principal may touch once its owner is known
// ("a courier may only act on their own offers and tasks") is a business rule: each domain package decides
// it from FromContext, in its own terms.
package auth

import (
	"context"
	"slices"
	"time"
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
	// IssuedAt is when the user's access token was issued (its "iat", whole seconds); zero when unknown.
	// Subjects refuses tokens issued at or before the user's revocation.
	IssuedAt time.Time
	// ExpiresAt is when the user's access token expires (its "exp", whole seconds); zero when unknown.
	// A call is admitted only before it, but a stream outlives the check: a long one (a courier's dispatch
	// session) ends itself there.
	ExpiresAt time.Time
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
