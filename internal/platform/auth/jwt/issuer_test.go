package jwt_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"lastmile/internal/platform/auth/jwt"
)

// decodeSegment decodes one JWT segment into a generic JSON value.
func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("decode segment: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("unmarshal segment %s: %v", raw, err)
	}
	return m
}

func TestIssue(t *testing.T) {
	k1 := newSigner(t, "k1")
	now := time.Date(2030, 1, 2, 3, 4, 5, 999_000_000, time.UTC)
	iss, err := jwt.NewIssuer(jwt.IssuerConfig{
		Issuer: testIssuer, Audience: testAudience,
		Keys: jwt.StaticKey{KID: "k1", Key: k1.priv},
		Now:  func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("NewIssuer() error = %v", err)
	}
	token, exp, err := iss.Issue(context.Background(), "u-1", []string{"courier"})
	if err != nil {
		t.Fatalf("Issue() error = %v", err)
	}
	if want := time.Date(2030, 1, 2, 3, 19, 5, 0, time.UTC); !exp.Equal(want) {
		t.Errorf("Issue() expiry = %v, want %v (whole seconds, DefaultTTL)", exp, want)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("Issue() = %q, want three segments", token)
	}
	wantHeader := map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}
	if diff := cmp.Diff(wantHeader, decodeSegment(t, parts[0])); diff != "" {
		t.Errorf("header mismatch (-want +got):\n%s", diff)
	}
	claims := decodeSegment(t, parts[1])
	jti, _ := claims["jti"].(string)
	if id, err := uuid.Parse(jti); err != nil || id.Version() != 4 {
		t.Errorf("jti = %q, want a random (version 4) UUID", jti)
	}
	delete(claims, "jti")
	wantClaims := map[string]any{
		"iss":   testIssuer,
		"aud":   testAudience, // one string, not a list
		"sub":   "u-1",
		"iat":   float64(now.Unix()),
		"nbf":   float64(now.Unix()),
		"exp":   float64(exp.Unix()),
		"roles": []any{"courier"},
	}
	if diff := cmp.Diff(wantClaims, claims); diff != "" {
		t.Errorf("claims mismatch (-want +got):\n%s", diff)
	}
	if !ed25519.Verify(k1.pub, []byte(parts[0]+"."+parts[1]), mustDecode(t, parts[2])) {
		t.Errorf("signature does not verify with k1's public key")
	}

	other, _, err := iss.Issue(context.Background(), "u-1", nil)
	if err != nil {
		t.Fatalf("Issue(no roles) error = %v", err)
	}
	claims = decodeSegment(t, strings.Split(other, ".")[1])
	if diff := cmp.Diff([]any{}, claims["roles"]); diff != "" {
		t.Errorf("roles without roles mismatch (-want +got):\n%s", diff)
	}
	if claims["jti"] == jti {
		t.Errorf("two tokens share jti %q", jti)
	}
}

func mustDecode(t *testing.T, seg string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIssueTTL(t *testing.T) {
	k1 := newSigner(t, "k1")
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	iss, err := jwt.NewIssuer(jwt.IssuerConfig{
		Issuer: testIssuer, Audience: testAudience, TTL: 90 * time.Second,
		Keys: jwt.StaticKey{KID: "k1", Key: k1.priv},
		Now:  func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("NewIssuer() error = %v", err)
	}
	_, exp, err := iss.Issue(context.Background(), "u-1", nil)
	if err != nil || !exp.Equal(now.Add(90*time.Second)) {
		t.Errorf("Issue() = %v, %v; want expiry %v", exp, err, now.Add(90*time.Second))
	}
}

// failingKeys is a KeySource whose key store is down.
type failingKeys struct{ err error }

func (f failingKeys) SigningKey(context.Context) (string, ed25519.PrivateKey, error) {
	return "", nil, f.err
}

func TestIssueErrors(t *testing.T) {
	k1 := newSigner(t, "k1")
	errStore := errors.New("key store down")
	tests := []struct {
		name    string
		keys    jwt.KeySource
		subject string
		wantIs  error
	}{
		{"empty subject", jwt.StaticKey{KID: "k1", Key: k1.priv}, "", nil},
		{"key source fails", failingKeys{errStore}, "u-1", errStore},
		{"no kid", jwt.StaticKey{Key: k1.priv}, "u-1", nil},
		{"seed instead of private key", jwt.StaticKey{KID: "k1", Key: ed25519.PrivateKey(k1.priv.Seed())}, "u-1", nil},
		{"no key", jwt.StaticKey{KID: "k1"}, "u-1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss, err := jwt.NewIssuer(jwt.IssuerConfig{Issuer: testIssuer, Audience: testAudience, Keys: tt.keys})
			if err != nil {
				t.Fatalf("NewIssuer() error = %v", err)
			}
			token, _, err := iss.Issue(context.Background(), tt.subject, nil)
			if err == nil || token != "" {
				t.Fatalf("Issue() = %q, %v; want an error", token, err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Issue() error = %v, want it to wrap %v", err, tt.wantIs)
			}
		})
	}
}

func TestNewIssuerRejects(t *testing.T) {
	keys := jwt.StaticKey{KID: "k1", Key: newSigner(t, "k1").priv}
	tests := []struct {
		name string
		cfg  jwt.IssuerConfig
	}{
		{"no issuer", jwt.IssuerConfig{Audience: testAudience, Keys: keys}},
		{"no audience", jwt.IssuerConfig{Issuer: testIssuer, Keys: keys}},
		{"no keys", jwt.IssuerConfig{Issuer: testIssuer, Audience: testAudience}},
		{"negative TTL", jwt.IssuerConfig{Issuer: testIssuer, Audience: testAudience, Keys: keys, TTL: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := jwt.NewIssuer(tt.cfg); err == nil {
				t.Errorf("NewIssuer(%+v) error = nil, want an error", tt.cfg)
			}
		})
	}
}
