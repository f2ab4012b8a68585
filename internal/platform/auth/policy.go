package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"lastmile/internal/platform/apperr"
)

// Rule says who may call one method. The zero Rule allows nobody. A rule may admit several sorts of
// callers at once: Users("ROLE_ADMIN").Or(Internal("dispatch")) admits admins and the dispatch service.
type Rule struct {
	// Public admits every caller, anonymous ones included.
	Public bool
	// Roles admits authenticated users holding any of these roles.
	Roles []string
	// Authenticated, with no Roles, admits every authenticated user. With Roles it adds nothing: a role
	// already implies an authenticated user.
	Authenticated bool
	// Services admits these service identities (service-to-service calls over mTLS). Services are never
	// admitted by Public-less user rules: an internal method must name its callers.
	Services []string
	// Capability admits anonymous callers too, for methods whose requests may carry a capability, such as
	// a share link's signed token, that grants access to one resource by itself. The gate cannot see the
	// request (a stream's first message arrives after it), so the handler must check the capability and
	// answer an anonymous caller without one with Unauthenticated.
	Capability bool
}

// Public returns a rule that admits every caller, anonymous ones included.
func Public() Rule { return Rule{Public: true} }

// Users returns a rule that admits authenticated users holding any of roles, or every authenticated user
// when roles is empty.
func Users(roles ...string) Rule {
	return Rule{Authenticated: true, Roles: slices.Clone(roles)}
}

// CapabilityHolders returns a rule that admits anonymous callers, on the understanding that the
// handler lets them through only with a capability in the request (see Rule.Capability).
func CapabilityHolders() Rule { return Rule{Capability: true} }

// Internal returns a rule that admits only the named services, authenticated by their certificates.
func Internal(services ...string) Rule {
	return Rule{Services: slices.Clone(services)}
}

// Or returns a rule that admits every caller that r or o admits.
func (r Rule) Or(o Rule) Rule {
	out := Rule{
		Public:        r.Public || o.Public,
		Authenticated: r.Authenticated || o.Authenticated,
		Services:      union(r.Services, o.Services),
		Capability:    r.Capability || o.Capability,
	}
	// "Any user" absorbs any role list; only two role lists combine into a role list.
	if !r.anyUser() && !o.anyUser() {
		out.Roles = union(r.Roles, o.Roles)
	}
	return out
}

// anyUser reports whether r admits every authenticated user.
func (r Rule) anyUser() bool { return r.Authenticated && len(r.Roles) == 0 }

// admits reports whether r lets p call.
func (r Rule) admits(p Principal) bool {
	if r.Public {
		return true
	}
	switch p.Kind {
	case Anonymous:
		return r.Capability
	case User:
		if r.anyUser() {
			return true
		}
		for _, role := range r.Roles {
			if p.HasRole(role) {
				return true
			}
		}
	case Service:
		return slices.Contains(r.Services, p.Subject)
	}
	return false
}

// String describes the rule for logs and test failures.
func (r Rule) String() string {
	if r.Public {
		return "public"
	}
	var parts []string
	switch {
	case r.anyUser():
		parts = append(parts, "any user")
	case len(r.Roles) > 0:
		parts = append(parts, "users with "+strings.Join(r.Roles, "|"))
	}
	if len(r.Services) > 0 {
		parts = append(parts, "services "+strings.Join(r.Services, "|"))
	}
	if r.Capability {
		parts = append(parts, "anonymous holders of a capability")
	}
	if len(parts) == 0 {
		return "nobody"
	}
	return strings.Join(parts, " or ")
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Policy maps full gRPC method names ("/lastmile.route.v1.RouteService/EstimateRoute") to the rule that
// guards them. A method missing from the policy is denied to everyone: adding an RPC without deciding who
// may call it closes it rather than opening it.
type Policy map[string]Rule

// Authorize decides whether p may call fullMethod. It returns nil when the rule admits p, an
// apperr.Unauthenticated error when an anonymous caller needs to authenticate first, and an
// apperr.PermissionDenied error when an authenticated caller is not admitted or the method has no rule.
// The errors' messages do not describe the policy; their causes, which are only logged, do.
func (pol Policy) Authorize(_ context.Context, fullMethod string, p Principal) error {
	rule, ok := pol[fullMethod]
	if !ok {
		return &apperr.Error{Code: apperr.PermissionDenied, Message: "permission denied",
			Err: fmt.Errorf("no policy rule for %s", fullMethod)}
	}
	if rule.admits(p) {
		return nil
	}
	if p.Kind == Anonymous {
		return &apperr.Error{Code: apperr.Unauthenticated, Message: "authentication required",
			Err: fmt.Errorf("anonymous caller of %s (rule: %s)", fullMethod, rule)}
	}
	return &apperr.Error{Code: apperr.PermissionDenied, Message: "permission denied",
		Err: fmt.Errorf("%s %q may not call %s (rule: %s)", p.Kind, p.Subject, fullMethod, rule)}
}

// Check returns an error naming every method in methods that has no rule in pol, or nil when all have
// one. Servers call it before serving, and each service's tests call it with the methods of its
// generated descriptors (grpcauth.Methods), so that a new RPC cannot ship without a decision.
func (pol Policy) Check(methods []string) error {
	var missing []string
	for _, m := range methods {
		if _, ok := pol[m]; !ok {
			missing = append(missing, m)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	missing = slices.Compact(missing)
	return fmt.Errorf("authorization policy has no rule for %d method(s): %s", len(missing), strings.Join(missing, ", "))
}
