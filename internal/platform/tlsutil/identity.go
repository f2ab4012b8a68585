// Package tlsutil provides lastmile's transport security: a development certificate authority kept in the
// data directory, service certificates that carry SPIFFE-style identities (spiffe://lastmile/<service>),
// mutual-TLS server and client configurations with certificate hot reload, and the lookup of a caller's
// service identity from a verified TLS connection.
//
// End users and courier apps connect with TLS and a bearer token but without a client certificate, so
// servers request client certificates without requiring them: a peer is a service only when it presented a
// certificate that chains to the configured CA and names exactly one lastmile SPIFFE ID.
package tlsutil

import (
	"context"
	"crypto/tls"
	"net/url"
	"regexp"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// TrustDomain is the SPIFFE trust domain of every lastmile service identity.
const TrustDomain = "lastmile"

// serviceName is the shape of a service name inside a SPIFFE ID; it keeps identities usable verbatim in
// file names, log fields and authorization policies.
var serviceName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// SPIFFEID returns the URI spiffe://lastmile/<service>. It does not validate service; EnsureCert does before
// putting the URI in a certificate, and PeerServiceIdentity does when reading one back.
func SPIFFEID(service string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/" + service}
}

// PeerServiceIdentity returns the service named by the peer certificate of a TLS connection. It consults only
// state.VerifiedChains, so a certificate the handshake did not verify against the configured CA never yields
// an identity. The leaf must carry exactly one URI SAN (as an X.509 SVID does), of the form
// spiffe://lastmile/<service> with service matching ^[a-z][a-z0-9-]{0,62}$; anything else gives ok=false.
func PeerServiceIdentity(state tls.ConnectionState) (service string, ok bool) {
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := state.VerifiedChains[0][0]
	if len(leaf.URIs) != 1 {
		return "", false
	}
	u := leaf.URIs[0]
	if u.Scheme != "spiffe" || u.Host != TrustDomain || u.Opaque != "" || u.User != nil ||
		u.RawPath != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", false
	}
	name, found := strings.CutPrefix(u.Path, "/")
	if !found || !serviceName.MatchString(name) {
		return "", false
	}
	return name, true
}

// ServiceFromContext returns the service identity of the gRPC peer of ctx, as PeerServiceIdentity does for
// its TLS connection state. It reports ok=false for a context without a peer or for a peer that did not
// connect over TLS.
//
// A call made inside the process (InProcessInfo) has the identity of the component that made it.
func ServiceFromContext(ctx context.Context) (string, bool) {
	p, found := peer.FromContext(ctx)
	if !found {
		return "", false
	}
	switch info := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		return PeerServiceIdentity(info.State)
	case InProcessInfo:
		if !serviceName.MatchString(info.Service) {
			return "", false
		}
		return info.Service, true
	}
	return "", false
}

// InProcessInfo is the credentials.AuthInfo of a call that never left the process: a component of a
// lastmile process (the REST gateway of an all-in-one `lastmile serve`) calling the process's own gRPC
// services in memory (grpcserver.Server.InProcess), as the service identity its certificate names. No
// transport produces it, so no network caller can present it: network peers carry credentials.TLSInfo
// (or nothing, over plaintext).
type InProcessInfo struct {
	credentials.CommonAuthInfo
	// Service is the calling component's identity, such as "gateway".
	Service string
}

// AuthType implements credentials.AuthInfo.
func (InProcessInfo) AuthType() string { return "inprocess" }
