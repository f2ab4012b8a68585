package auth

import "context"

// MaxTokenBytes bounds the size of a bearer token. Real access tokens are well under a kilobyte; the
// bound keeps a hostile header from reaching the token verifier.
const MaxTokenBytes = 8 << 10

// TokenVerifier turns a bearer token into the user it was issued to. The identity service provides the
// JWT implementation (package jwt); authenticators (grpcauth.ServiceAuthenticator) consume it.
type TokenVerifier interface {
	// Verify returns a User principal for a valid token. It returns an apperr.Unauthenticated error for an
	// invalid, expired or unacceptable token, and apperr.Unavailable when it cannot decide (for example,
	// when signing keys cannot be fetched). Errors must not contain the token.
	Verify(ctx context.Context, token string) (Principal, error)
}
