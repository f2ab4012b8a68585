package jwt_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth/jwt"
)

func Example() {
	ctx := context.Background()
	pub, priv, _ := ed25519.GenerateKey(nil)

	// In the identity service: sign with the current key.
	issuer, err := jwt.NewIssuer(jwt.IssuerConfig{
		Issuer:   "lastmile-identity",
		Audience: "lastmile",
		Keys:     jwt.StaticKey{KID: "2025-01", Key: priv},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	token, _, err := issuer.Issue(ctx, "0199a1d2-7c4e-7b1a-9f3e-2d4c5b6a7e8f", []string{"courier"})
	if err != nil {
		fmt.Println(err)
		return
	}

	// In every service: verify against identity's published keys (over gRPC GetJwks in the binary, or
	// jwt.JWKSEndpoint{URL: ".../.well-known/jwks.json"}).
	keys, err := jwt.NewKeyCache(jwt.FetcherFunc(func(context.Context) ([]jwt.PublicKey, error) {
		return []jwt.PublicKey{{KID: "2025-01", Key: pub}}, nil
	}), jwt.KeyCacheConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	verifier, err := jwt.NewVerifier(jwt.VerifierConfig{Issuer: "lastmile-identity", Audience: "lastmile", Keys: keys})
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := verifier.Verify(ctx, token)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Kind, p.Subject, p.Roles)

	// A token whose signature was tampered with.
	sig := strings.LastIndexByte(token, '.') + 1
	replacement := "A"
	if token[sig] == 'A' {
		replacement = "B"
	}
	forged := token[:sig] + replacement + token[sig+1:]
	_, err = verifier.Verify(ctx, forged)
	fmt.Println(apperr.CodeOf(err), apperr.MessageOf(err))
	// Output:
	// user 0199a1d2-7c4e-7b1a-9f3e-2d4c5b6a7e8f [courier]
	// unauthenticated invalid access token
}
