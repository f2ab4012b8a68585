package identity_test

import (
	"lastmile/internal/identity"
	"lastmile/internal/platform/auth/jwt"
	pwhash "lastmile/internal/platform/auth/password"
)

// The platform's implementations satisfy the interfaces the domain declares, so that the binary can wire
// them without adapters.
var (
	_ identity.PasswordHasher = (*pwhash.Hasher)(nil)
	_ identity.TokenIssuer    = (*jwt.Issuer)(nil)
	_ jwt.KeySource           = (*identity.KeyManager)(nil)
)
