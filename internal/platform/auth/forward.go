package auth

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

type tokenKey struct{}

// WithToken returns a context carrying the raw bearer token that the principal of the work in ctx was
// authenticated with, for TokenForwarder to send on. Servers do not need it: inside a gRPC call the token
// already travels in the incoming metadata, and TokenFrom finds it there (see TokenFrom). It is for code
// that acts for a user outside a gRPC call, such as an HTTP handler that verified the token itself.
//
// The token is a credential: never log it or keep it beyond the work it authorizes.
func WithToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// TokenFrom returns the bearer token to forward on calls made for the user of ctx: the token given to
// WithToken, or else, when the principal of ctx is a User, the bearer token of the incoming request
// metadata. It reports ok=false when there is neither, notably for Service and Anonymous principals.
//
// The incoming metadata needs no copy of the token: ServiceAuthenticator turns a call with a bearer token
// into a User principal only when the Verifier accepted exactly that token, so a User principal and the
// metadata it was established from always travel together in the handler's context. (An Authenticator
// cannot put anything into the context itself: it returns a Principal, which the server stores with
// WithPrincipal. Keeping the token out of Principal keeps it out of every log line that prints one.)
func TokenFrom(ctx context.Context) (string, bool) {
	if token, ok := ctx.Value(tokenKey{}).(string); ok && token != "" {
		return token, true
	}
	if FromContext(ctx).Kind != User {
		return "", false
	}
	md, _ := metadata.FromIncomingContext(ctx)
	token, ok, err := bearerToken(md)
	if err != nil || !ok {
		return "", false
	}
	return token, true
}

// TokenForwarder is a credentials.PerRPCCredentials that sends the end user's bearer token (TokenFrom) on
// every call made with a context derived from the user's request, so that the next service authorizes the
// user, not the forwarding service (see "Forwarded calls and the confused deputy" in the package
// documentation). A call whose context carries no user token goes out without one and runs as the calling
// service, identified by its client certificate.
//
// It requires transport security: grpc-go refuses to create a connection with insecure transport
// credentials that carries it, so a token can never cross the network in plaintext.
type TokenForwarder struct{}

var _ credentials.PerRPCCredentials = TokenForwarder{}

// ForwardToken returns the dial option that installs TokenForwarder on a connection, such as an entry of
// grpcclient.Config.DialOptions.
func ForwardToken() grpc.DialOption {
	return grpc.WithPerRPCCredentials(TokenForwarder{})
}

// GetRequestMetadata implements credentials.PerRPCCredentials. It adds "authorization: Bearer <token>"
// when ctx carries a user token and the caller did not set an authorization entry of its own: two entries
// would make the server refuse the call.
func (TokenForwarder) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	token, ok := TokenFrom(ctx)
	if !ok {
		return nil, nil
	}
	if md, found := metadata.FromOutgoingContext(ctx); found && len(md.Get(AuthorizationKey)) > 0 {
		return nil, nil
	}
	return map[string]string{AuthorizationKey: "Bearer " + token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: bearer tokens travel only over TLS.
func (TokenForwarder) RequireTransportSecurity() bool { return true }
