package jwt

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Limits on a fetched JSON Web Key Set. A real one holds two or three keys in well under a kilobyte.
const (
	maxJWKSBytes = 1 << 20
	maxJWKSKeys  = 100
)

// ErrUnsupportedKey is returned by JWK.PublicKey for a key that is not an Ed25519 signature key.
var ErrUnsupportedKey = errors.New("not an Ed25519 signature key")

// JWK is one JSON Web Key (RFC 7517, section 4) of the kind lastmile uses: an Ed25519 public key as an
// octet key pair (RFC 8037, section 2).
type JWK struct {
	// KeyType is "OKP".
	KeyType string `json:"kty"`
	// Curve is "Ed25519".
	Curve string `json:"crv"`
	// X is the public key, base64url-encoded without padding.
	X string `json:"x"`
	// KeyID matches the "kid" header of the tokens the key signed.
	KeyID string `json:"kid"`
	// Algorithm is "EdDSA", or empty.
	Algorithm string `json:"alg,omitempty"`
	// Use is "sig", or empty.
	Use string `json:"use,omitempty"`
}

// JWKS is a JSON Web Key Set (RFC 7517, section 5), the document served at /.well-known/jwks.json.
type JWKS struct {
	// Keys are the keys, the current signing key first.
	Keys []JWK `json:"keys"`
}

// EncodeJWK returns k as a JWK, with alg "EdDSA" and use "sig".
func EncodeJWK(k PublicKey) JWK {
	return JWK{
		KeyType:   "OKP",
		Curve:     "Ed25519",
		X:         base64.RawURLEncoding.EncodeToString(k.Key),
		KeyID:     k.KID,
		Algorithm: Algorithm,
		Use:       "sig",
	}
}

// PublicKey returns the key j describes. It returns an error wrapping ErrUnsupportedKey when j is not an
// Ed25519 key for signatures (another kty or crv, an alg other than EdDSA, a use other than sig), and
// another error when j claims to be one but is malformed.
func (j JWK) PublicKey() (PublicKey, error) {
	if j.KeyType != "OKP" || j.Curve != "Ed25519" ||
		(j.Algorithm != "" && j.Algorithm != Algorithm) || (j.Use != "" && j.Use != "sig") {
		return PublicKey{}, fmt.Errorf("JWK %.64q (kty %.16q, crv %.16q, alg %.16q, use %.16q): %w",
			j.KeyID, j.KeyType, j.Curve, j.Algorithm, j.Use, ErrUnsupportedKey)
	}
	if j.KeyID == "" {
		return PublicKey{}, errors.New("JWK without kid")
	}
	x, err := base64.RawURLEncoding.Strict().DecodeString(j.X)
	if err != nil {
		return PublicKey{}, fmt.Errorf("Ed25519 JWK %.64q: x: %w", j.KeyID, err)
	}
	if len(x) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("Ed25519 JWK %.64q: x is %d bytes, want %d", j.KeyID, len(x), ed25519.PublicKeySize)
	}
	return PublicKey{KID: j.KeyID, Key: ed25519.PublicKey(x)}, nil
}

// ParseJWKS returns the Ed25519 signature keys of a JSON Web Key Set document. Keys of other types,
// curves, algorithms or uses are skipped, as RFC 7517 (section 5) asks of keys a reader does not
// understand; so are Ed25519 keys that are malformed. It returns an error when the document is not a
// JWKS, holds more than 100 keys, or yields no usable key.
func ParseJWKS(data []byte) ([]PublicKey, error) {
	var set JWKS
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("parse JWKS: %d keys, at most %d allowed", len(set.Keys), maxJWKSKeys)
	}
	keys := make([]PublicKey, 0, len(set.Keys))
	for _, j := range set.Keys {
		k, err := j.PublicKey()
		if err != nil {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("parse JWKS: no usable Ed25519 key among %d", len(set.Keys))
	}
	return keys, nil
}

// JWKSEndpoint is a KeySetFetcher that GETs a JWKS document over HTTP, such as the gateway's
// https://<host>/.well-known/jwks.json, and parses it with ParseJWKS.
type JWKSEndpoint struct {
	// URL is the address of the document.
	URL string
	// Client sends the request; nil means http.DefaultClient. The fetch is bounded by its context.
	Client *http.Client
}

var _ KeySetFetcher = JWKSEndpoint{}

// FetchKeySet implements KeySetFetcher.
func (e JWKSEndpoint) FetchKeySet(ctx context.Context) ([]PublicKey, error) {
	client := e.Client
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS from %s: status %s", e.URL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS from %s: %w", e.URL, err)
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("fetch JWKS from %s: document exceeds %d bytes", e.URL, maxJWKSBytes)
	}
	keys, err := ParseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS from %s: %w", e.URL, err)
	}
	return keys, nil
}
