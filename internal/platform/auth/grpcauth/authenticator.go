package grpcauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/metadata"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/tlsutil"
)

// AuthorizationKey is the request metadata key that carries a bearer token: "authorization: Bearer <token>".
const AuthorizationKey = "authorization"

// DefaultEdgeProxies lists the services that carry end users' traffic from outside: calls they make
// without a user token are anonymous, not calls by the service itself (see the package documentation).
var DefaultEdgeProxies = []string{"gateway"}

// Authenticator establishes the principal of a call from its context (which carries the connection's
// peer and TLS state) and its incoming metadata.
type Authenticator interface {
	// Authenticate returns the caller's principal: auth.Anonymous when the caller proved nothing. It returns an
	// apperr.Unauthenticated error when the caller presented credentials that are malformed, invalid or
	// not accepted here; a presented credential is never ignored.
	Authenticate(ctx context.Context, md metadata.MD) (auth.Principal, error)
}

// ServiceAuthenticator is the standard Authenticator. It trusts two credentials:
//
//   - a bearer token in the "authorization" metadata, checked by Verifier: the call runs as that User,
//     with Via set to the forwarding service if the connection carries a service certificate;
//   - the verified mTLS identity of the peer (tlsutil.ServiceFromContext): without a token, the call runs
//     as that Service — unless the service is an edge proxy, whose calls without a token are Anonymous.
//
// A token with no Verifier configured is rejected as Unauthenticated, never ignored: a caller that
// presented a token must not silently run with other rights than the token's.
//
// The verified token is not copied into the Principal, which is printed in log lines; it stays in the
// call's incoming metadata only.
//
// The zero value accepts service certificates, rejects every token and treats DefaultEdgeProxies as edge
// proxies.
type ServiceAuthenticator struct {
	// Verifier checks bearer tokens; nil rejects them all.
	Verifier auth.TokenVerifier
	// EdgeProxies lists service identities whose token-less calls are anonymous. Nil means
	// DefaultEdgeProxies; an empty non-nil slice means none.
	EdgeProxies []string
	// Subjects, when set, checks the user of every verified token against the user's current state
	// (suspended, deleted, roles changed, tokens revoked), normally an *auth.Subjects; its errors
	// (Unauthenticated, or Unavailable when the state cannot be read) refuse the call. Nil checks the
	// token alone.
	Subjects SubjectChecker
}

// SubjectChecker checks a verified user principal against the user's current state. *auth.Subjects
// implements it.
type SubjectChecker interface {
	// Check returns nil when p may call, an apperr error otherwise.
	Check(ctx context.Context, p auth.Principal) error
}

// ContextAuthenticator is an Authenticator that reads the metadata it needs from the context itself,
// key by key (metadata.ValueFromIncomingContext), so that the server need not copy the whole incoming
// metadata for it (metadata.FromIncomingContext copies every key and value, about ten allocations per
// call). The server calls AuthenticateContext when the Authenticator has it.
type ContextAuthenticator interface {
	Authenticator
	// AuthenticateContext returns what Authenticate returns for the context's incoming metadata.
	AuthenticateContext(ctx context.Context) (auth.Principal, error)
}

var _ ContextAuthenticator = (*ServiceAuthenticator)(nil)

// Authenticate implements Authenticator. See the type's documentation for the rules.
func (a *ServiceAuthenticator) Authenticate(ctx context.Context, md metadata.MD) (auth.Principal, error) {
	return a.authenticate(ctx, md.Get(AuthorizationKey))
}

// AuthenticateContext implements ContextAuthenticator: Authenticate without a copy of the metadata.
func (a *ServiceAuthenticator) AuthenticateContext(ctx context.Context) (auth.Principal, error) {
	return a.authenticate(ctx, metadata.ValueFromIncomingContext(ctx, AuthorizationKey))
}

// authenticate applies the rules to the call's authorization entries.
func (a *ServiceAuthenticator) authenticate(ctx context.Context, authorization []string) (auth.Principal, error) {
	service, isService := tlsutil.ServiceFromContext(ctx)
	token, hasToken, err := bearerToken(authorization)
	if err != nil {
		return auth.Principal{}, err
	}
	if hasToken {
		// The token decides, whoever forwarded it: the forwarding service's identity grants nothing.
		p, err := a.verify(ctx, token)
		if err != nil {
			return auth.Principal{}, err
		}
		if a.Subjects != nil {
			if err := a.Subjects.Check(ctx, p); err != nil {
				return auth.Principal{}, err
			}
		}
		p.Via = ""
		if isService {
			p.Via = service
		}
		return p, nil
	}
	if !isService {
		return auth.Principal{}, nil
	}
	proxies := a.EdgeProxies
	if proxies == nil {
		proxies = DefaultEdgeProxies
	}
	if slices.Contains(proxies, service) {
		return auth.Principal{Kind: auth.Anonymous, Via: service}, nil
	}
	return auth.Principal{Kind: auth.Service, Subject: service}, nil
}

func (a *ServiceAuthenticator) verify(ctx context.Context, token string) (auth.Principal, error) {
	if a.Verifier == nil {
		return auth.Principal{}, apperr.Errorf(apperr.Unauthenticated, "bearer tokens are not accepted by this server")
	}
	p, err := a.Verifier.Verify(ctx, token)
	if err != nil {
		if e := apperr.As(err); e != nil && e.Code != apperr.Internal {
			return auth.Principal{}, err
		}
		return auth.Principal{}, apperr.Wrap(apperr.Unauthenticated, err, "invalid bearer token")
	}
	if p.Kind != auth.User || p.Subject == "" {
		// A verifier bug must not turn a token into a service identity or an anonymous pass.
		return auth.Principal{}, apperr.Wrap(apperr.Internal,
			fmt.Errorf("token verifier returned a %s principal with subject %q, want a user", p.Kind, p.Subject),
			"internal error")
	}
	return p, nil
}

// bearerToken extracts the token of an "authorization: Bearer <token>" entry, given the values of the
// call's authorization key. Any other shape of a present authorization entry is an error, so that a
// credential the server cannot use is refused, not ignored.
func bearerToken(values []string) (token string, ok bool, err error) {
	switch len(values) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", false, apperr.Errorf(apperr.Unauthenticated, "more than one authorization entry")
	}
	scheme, rest, found := strings.Cut(values[0], " ")
	token = strings.TrimSpace(rest)
	if !found || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false, apperr.Errorf(apperr.Unauthenticated, `malformed authorization: want "Bearer <token>"`)
	}
	if len(token) > auth.MaxTokenBytes {
		return "", false, apperr.Wrap(apperr.Unauthenticated,
			errors.New("token exceeds auth.MaxTokenBytes"), "bearer token too large")
	}
	return token, true, nil
}
