// Package jwt issues and verifies lastmile's access tokens: JSON Web Tokens (RFC 7519) signed with Ed25519,
// in the JWT profile for OAuth 2.0 access tokens (RFC 9068).
//
// # The token model
//
// A user who logs in receives two tokens from the identity service. The access token is a JWT that lives
// for minutes (DefaultTTL, 15 minutes): every service verifies it on its own, from the token alone and
// the identity service's public keys, without a call per request. Because nothing can revoke it, it is
// short. The refresh token is opaque random bytes that only the identity service understands; it is stored
// hashed, rotated on every use and revocable, and it buys new access tokens. This package knows nothing
// about refresh tokens.
//
// An access token looks like this:
//
//	header  {"alg":"EdDSA","kid":"<key id>","typ":"at+jwt"}
//	claims  {"iss":"lastmile-identity","aud":"lastmile","sub":"<user id>","exp":…,"iat":…,"nbf":…,
//	         "jti":"<random UUID>","roles":["courier"]}
//
// The Verifier turns a valid token into an auth.Principal{Kind: auth.User, Subject: sub, Roles: roles}; it
// implements auth.TokenVerifier for grpcauth.ServiceAuthenticator.
//
// # The algorithm allow-list
//
// A JWT names its own signature algorithm in its header, and an attacker writes the header. The Verifier
// therefore accepts exactly one algorithm, EdDSA, whatever the header says: "alg":"none" (no signature)
// and the classic key confusion, a token signed with HS256 using the public key as the HMAC secret, are
// refused before any key is looked at, and so is every RSA or ECDSA variant. The header's "typ" must be
// "at+jwt" (RFC 9068, section 4), so that no other JWT the system might ever sign — an ID token, a
// refresh or e-mail confirmation token — can be replayed as an access token. Issuer, audience, expiry
// (required), not-before and issued-at (required) are checked with at most MaxLeeway of clock skew, and
// base64 is decoded strictly, so each valid token has exactly one spelling. A token may not live longer
// than the issuer's TTL (VerifierConfig.MaxLifetime) plus the leeway, counted both from its iat and from
// now: a correctly signed ten-year token, the product of a misconfigured issuer or a stolen key, is
// refused.
//
// # Keys and rotation with overlap
//
// The identity service signs with its current Ed25519 key and names it in the "kid" header. Verifiers
// look the kid up in a KeyCache, which holds the public keys of identity's JSON Web Key Set (RFC 7517, RFC
// 8037) and refetches them once they are KeyCacheConfig.RefreshInterval old (the lookup that notices
// still answers at once; the fetch runs in the background). Rotation works with an overlap:
//
//  1. identity creates a new key, signs new tokens with it and publishes it together with the previous
//     key (publishing it one RefreshInterval before signing with it spares verifiers even the fetch
//     below);
//  2. a verifier meeting the new kid for the first time refetches at once, so new tokens verify within
//     one fetch;
//  3. the previous key stays published for at least the token lifetime plus MaxLeeway after it signed
//     its last token, so every token it signed still verifies until it expires;
//  4. then identity drops it from the set; once their keys are next refetched, verifiers forget it, and
//     a token signed by it — expired by then, or forged with a stolen retired key — is refused.
//
// Refreshes caused by unknown kids are rate-limited (KeyCacheConfig.MinRefreshInterval), because anyone
// can send a token with a random kid; concurrent refreshes share one fetch; and a failed refresh keeps
// serving the keys already known, so identity being down for a while does not log everyone out.
package jwt
