package jwt_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/jwt"
)

func TestEncodeJWK(t *testing.T) {
	k := newSigner(t, "k1")
	got := jwt.EncodeJWK(k.public())
	want := jwt.JWK{KeyType: "OKP", Curve: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k.pub), KeyID: "k1", Algorithm: "EdDSA", Use: "sig"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("EncodeJWK() mismatch (-want +got):\n%s", diff)
	}
	back, err := got.PublicKey()
	if err != nil || back.KID != "k1" || !back.Key.Equal(k.pub) {
		t.Errorf("PublicKey() = %+v, %v; want the key back", back, err)
	}
}

// TestParseJWKSRFC8037 parses the Ed25519 key of RFC 8037, appendix A.2.
func TestParseJWKSRFC8037(t *testing.T) {
	doc := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"rfc8037"}]}`
	keys, err := jwt.ParseJWKS([]byte(doc))
	if err != nil {
		t.Fatalf("ParseJWKS() error = %v", err)
	}
	want := "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
	if len(keys) != 1 || keys[0].KID != "rfc8037" || fmt.Sprintf("%x", keys[0].Key) != want {
		t.Errorf("ParseJWKS() = %+v, want kid rfc8037 with key %s", keys, want)
	}
}

func TestParseJWKSSkipsOtherKeys(t *testing.T) {
	k1, k2 := newSigner(t, "k1"), newSigner(t, "k2")
	x1 := base64.RawURLEncoding.EncodeToString(k1.pub)
	doc := `{"keys":[
		{"kty":"RSA","kid":"rsa","n":"0vx7agoebGcQSuuPiLJXZpt","e":"AQAB","alg":"RS256"},
		{"kty":"EC","crv":"P-256","kid":"ec","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
		{"kty":"OKP","crv":"X25519","kid":"x25519","x":"` + x1 + `"},
		{"kty":"OKP","crv":"Ed448","kid":"ed448","x":"` + x1 + `"},
		{"kty":"OKP","crv":"Ed25519","kid":"hs","x":"` + x1 + `","alg":"HS256"},
		{"kty":"OKP","crv":"Ed25519","kid":"enc","x":"` + x1 + `","use":"enc"},
		{"kty":"OKP","crv":"Ed25519","kid":"short","x":"` + x1[:20] + `"},
		{"kty":"OKP","crv":"Ed25519","kid":"padded","x":"` + base64.URLEncoding.EncodeToString(k1.pub) + `"},
		{"kty":"OKP","crv":"Ed25519","kid":"std-alphabet","x":"+/` + x1[2:] + `"},
		{"kty":"OKP","crv":"Ed25519","x":"` + x1 + `"},
		{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"` + x1 + `","alg":"EdDSA","use":"sig"},
		{"kty":"OKP","crv":"Ed25519","kid":"k2","x":"` + base64.RawURLEncoding.EncodeToString(k2.pub) + `","key_ops":["verify"]}
	]}`
	got, err := jwt.ParseJWKS([]byte(doc))
	if err != nil {
		t.Fatalf("ParseJWKS() error = %v", err)
	}
	want := []jwt.PublicKey{k1.public(), k2.public()}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseJWKS() mismatch (-want +got):\n%s", diff)
	}
}

func TestParseJWKSErrors(t *testing.T) {
	x := base64.RawURLEncoding.EncodeToString(newSigner(t, "k").pub)
	many := make([]jwt.JWK, 101)
	for i := range many {
		many[i] = jwt.JWK{KeyType: "OKP", Curve: "Ed25519", X: x, KeyID: fmt.Sprint(i)}
	}
	manyDoc, _ := json.Marshal(jwt.JWKS{Keys: many})
	tests := []struct{ name, doc string }{
		{"not JSON", `keys`},
		{"not a set", `[]`},
		{"keys not a list", `{"keys":{}}`},
		{"no keys", `{"keys":[]}`},
		{"no usable key", `{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`},
		{"too many keys", string(manyDoc)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if keys, err := jwt.ParseJWKS([]byte(tt.doc)); err == nil {
				t.Errorf("ParseJWKS() = %v, want an error", keys)
			}
		})
	}
	if _, err := (jwt.JWK{KeyType: "RSA"}).PublicKey(); !errors.Is(err, jwt.ErrUnsupportedKey) {
		t.Errorf("JWK{RSA}.PublicKey() error = %v, want ErrUnsupportedKey", err)
	}
}

// TestJWKSEndpointVerifies serves a JWKS document as the gateway does at /.well-known/jwks.json and
// verifies a token with the keys fetched from it.
func TestJWKSEndpointVerifies(t *testing.T) {
	k1, k2 := newSigner(t, "k1"), newSigner(t, "k2")
	doc, err := json.Marshal(jwt.JWKS{Keys: []jwt.JWK{jwt.EncodeJWK(k2.public()), jwt.EncodeJWK(k1.public())}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	}))
	defer srv.Close()

	cache := newCache(t, jwt.JWKSEndpoint{URL: srv.URL + "/.well-known/jwks.json", Client: srv.Client()}, nil)
	v := newVerifier(t, cache, time.Time{})
	for _, k := range []signer{k1, k2} {
		now := time.Now()
		p, err := v.Verify(context.Background(), k.issue(t, now, time.Minute, "u-1", "customer"))
		if want := (auth.Principal{Kind: auth.User, Subject: "u-1", Roles: []string{"customer"}, IssuedAt: now.Truncate(time.Second), ExpiresAt: now.Add(time.Minute).Truncate(time.Second)}); err != nil || !cmp.Equal(p, want) {
			t.Errorf("Verify(token of %s) = %+v, %v; want %+v", k.kid, p, err, want)
		}
	}
}

func TestJWKSEndpointErrors(t *testing.T) {
	x := base64.RawURLEncoding.EncodeToString(newSigner(t, "k").pub)
	good := `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"` + x + `"}]}`
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"not found", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }},
		{"server error", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(good))
		}},
		{"not a JWKS", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("<html>")) }},
		{"oversized", func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte(good[:len(good)-2] + `,"pad":"` + strings.Repeat("p", 1<<20) + `"}]}`))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			keys, err := jwt.JWKSEndpoint{URL: srv.URL, Client: srv.Client()}.FetchKeySet(context.Background())
			if err == nil {
				t.Errorf("FetchKeySet() = %v, want an error", keys)
			}
		})
	}
}
