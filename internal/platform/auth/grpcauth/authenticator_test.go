package grpcauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
)

func TestMethods(t *testing.T) {
	methods := grpcauth.Methods(routev1.File_lastmile_route_v1_route_proto.Services().ByName("RouteService"))
	want := []string{"/lastmile.route.v1.RouteService/EstimateRoute", "/lastmile.route.v1.RouteService/ComputeMatrix"}
	if diff := cmp.Diff(want, methods); diff != "" {
		t.Fatalf("Methods(RouteService) mismatch (-want +got):\n%s", diff)
	}
}

// fakeVerifier accepts the token "good" as user u1 and "svc" as a (buggy) service principal.
type fakeVerifier struct{}

func (fakeVerifier) Verify(_ context.Context, token string) (auth.Principal, error) {
	switch token {
	case "good":
		return auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{"ROLE_COURIER"}, Via: "forged"}, nil
	case "svc":
		return auth.Principal{Kind: auth.Service, Subject: "dispatch"}, nil
	case "down":
		return auth.Principal{}, apperr.Errorf(apperr.Unavailable, "keys unavailable")
	}
	return auth.Principal{}, errors.New("signature mismatch")
}

// servicePeer returns a context whose gRPC peer presented a verified certificate for service.
func servicePeer(service string) context.Context {
	leaf := &x509.Certificate{URIs: []*url.URL{{Scheme: "spiffe", Host: "lastmile", Path: "/" + service}}}
	return peer.NewContext(context.Background(), &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}},
	})
}

// tlsPeerWithoutCert returns a context whose peer connected over TLS without a client certificate.
func tlsPeerWithoutCert() context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		AuthInfo: credentials.TLSInfo{},
	})
}

func bearer(token string) metadata.MD { return metadata.Pairs("authorization", "Bearer "+token) }

func TestServiceAuthenticator(t *testing.T) {
	user := auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{"ROLE_COURIER"}}
	withVerifier := &grpcauth.ServiceAuthenticator{Verifier: fakeVerifier{}}
	tests := []struct {
		name  string
		authn *grpcauth.ServiceAuthenticator
		ctx   context.Context
		md    metadata.MD
		want  auth.Principal
	}{
		{"nothing is anonymous", withVerifier, context.Background(), nil, auth.Principal{}},
		{"tls without cert is anonymous", withVerifier, tlsPeerWithoutCert(), nil, auth.Principal{}},
		{"service cert", withVerifier, servicePeer("dispatch"), nil,
			auth.Principal{Kind: auth.Service, Subject: "dispatch"}},
		{"gateway without token is anonymous", withVerifier, servicePeer("gateway"), nil,
			auth.Principal{Kind: auth.Anonymous, Via: "gateway"}},
		{"zero value also treats gateway as edge proxy", &grpcauth.ServiceAuthenticator{}, servicePeer("gateway"), nil,
			auth.Principal{Kind: auth.Anonymous, Via: "gateway"}},
		{"no edge proxies configured", &grpcauth.ServiceAuthenticator{EdgeProxies: []string{}}, servicePeer("gateway"), nil,
			auth.Principal{Kind: auth.Service, Subject: "gateway"}},
		{"direct user token", withVerifier, tlsPeerWithoutCert(), bearer("good"), user},
		{"user token forwarded by gateway", withVerifier, servicePeer("gateway"), bearer("good"),
			auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{"ROLE_COURIER"}, Via: "gateway"}},
		{"user token forwarded by dispatch", withVerifier, servicePeer("dispatch"), metadata.Pairs("authorization", "bearer good"),
			auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{"ROLE_COURIER"}, Via: "dispatch"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.authn.Authenticate(tt.ctx, tt.md)
			if err != nil {
				t.Fatalf("Authenticate() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Authenticate() mismatch (-want +got):\n%s", diff)
			}
			// The metadata-free form reads the same metadata from the context.
			got, err = tt.authn.AuthenticateContext(metadata.NewIncomingContext(tt.ctx, tt.md))
			if err != nil {
				t.Fatalf("AuthenticateContext() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("AuthenticateContext() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServiceAuthenticatorRejects(t *testing.T) {
	withVerifier := &grpcauth.ServiceAuthenticator{Verifier: fakeVerifier{}}
	tests := []struct {
		name  string
		authn *grpcauth.ServiceAuthenticator
		ctx   context.Context
		md    metadata.MD
		want  apperr.Code
	}{
		{"token without verifier", &grpcauth.ServiceAuthenticator{}, context.Background(), bearer("good"), apperr.Unauthenticated},
		{"token without verifier from a service", &grpcauth.ServiceAuthenticator{}, servicePeer("dispatch"), bearer("good"), apperr.Unauthenticated},
		{"invalid token", withVerifier, context.Background(), bearer("bad"), apperr.Unauthenticated},
		{"invalid token from a service is not downgraded to the service", withVerifier, servicePeer("dispatch"), bearer("bad"), apperr.Unauthenticated},
		{"verifier unavailable", withVerifier, context.Background(), bearer("down"), apperr.Unavailable},
		{"verifier returns a service", withVerifier, context.Background(), bearer("svc"), apperr.Internal},
		{"basic scheme", withVerifier, context.Background(), metadata.Pairs("authorization", "Basic dXNlcjpwdw=="), apperr.Unauthenticated},
		{"empty bearer", withVerifier, context.Background(), metadata.Pairs("authorization", "Bearer "), apperr.Unauthenticated},
		{"two entries", withVerifier, context.Background(), metadata.Pairs("authorization", "Bearer good", "authorization", "Bearer good"), apperr.Unauthenticated},
		{"oversized token", withVerifier, context.Background(), bearer(strings.Repeat("a", auth.MaxTokenBytes+1)), apperr.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.authn.Authenticate(tt.ctx, tt.md)
			if got := apperr.CodeOf(err); got != tt.want {
				t.Fatalf("Authenticate() = %+v, %v; want code %q", p, err, tt.want)
			}
			if strings.Contains(apperr.MessageOf(err), "good") {
				t.Errorf("error message %q contains the token", apperr.MessageOf(err))
			}
			p, err = tt.authn.AuthenticateContext(metadata.NewIncomingContext(tt.ctx, tt.md))
			if got := apperr.CodeOf(err); got != tt.want {
				t.Fatalf("AuthenticateContext() = %+v, %v; want code %q", p, err, tt.want)
			}
		})
	}
}

// stateChecker refuses user u1 with err and records the principals it saw.
type stateChecker struct {
	err  error
	seen []auth.Principal
}

func (c *stateChecker) Check(_ context.Context, p auth.Principal) error {
	c.seen = append(c.seen, p)
	return c.err
}

// TestSubjectsCheckedAfterVerification: the user of a verified token is checked against their current
// state, whose refusal refuses the call; calls without a user token are not checked.
func TestSubjectsCheckedAfterVerification(t *testing.T) {
	md := metadata.Pairs(grpcauth.AuthorizationKey, "Bearer good")
	for _, tt := range []struct {
		name string
		err  error
		want apperr.Code
	}{
		{"accepted", nil, ""},
		{"revoked", apperr.Errorf(apperr.Unauthenticated, "access token revoked"), apperr.Unauthenticated},
		{"state unreadable", apperr.Errorf(apperr.Unavailable, "cannot check"), apperr.Unavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &stateChecker{err: tt.err}
			a := &grpcauth.ServiceAuthenticator{Verifier: fakeVerifier{}, Subjects: c}
			p, err := a.Authenticate(servicePeer("gateway"), md)
			if got := apperr.CodeOf(err); got != tt.want {
				t.Fatalf("Authenticate() = %+v, %v (code %q), want code %q", p, err, got, tt.want)
			}
			if len(c.seen) != 1 || c.seen[0].Subject != "u1" || c.seen[0].Kind != auth.User {
				t.Errorf("checked principals = %+v, want user u1 once", c.seen)
			}
			if tt.want == "" && p.Subject != "u1" {
				t.Errorf("Authenticate() = %+v, want user u1", p)
			}
		})
	}
	c := &stateChecker{err: apperr.Errorf(apperr.Unauthenticated, "no")}
	a := &grpcauth.ServiceAuthenticator{Verifier: fakeVerifier{}, Subjects: c}
	if p, err := a.Authenticate(servicePeer("dispatch"), metadata.MD{}); err != nil || p.Kind != auth.Service {
		t.Errorf("Authenticate(service certificate) = %+v, %v; want the service, unchecked", p, err)
	}
	if len(c.seen) != 0 {
		t.Errorf("checked %+v for a call without a user token, want nothing", c.seen)
	}
}
