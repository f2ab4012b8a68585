package tlsutil_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"lastmile/internal/platform/tlsutil"
)

func TestSPIFFEID(t *testing.T) {
	if got, want := tlsutil.SPIFFEID("dispatch").String(), "spiffe://lastmile/dispatch"; got != want {
		t.Errorf("SPIFFEID(%q) = %q, want %q", "dispatch", got, want)
	}
}

func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// verifiedState is the connection state of a handshake whose verified chain starts with a leaf carrying uris.
func verifiedState(t *testing.T, uris ...string) tls.ConnectionState {
	t.Helper()
	leaf := &x509.Certificate{}
	for _, s := range uris {
		leaf.URIs = append(leaf.URIs, mustParseURL(t, s))
	}
	return tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
}

func TestPeerServiceIdentity(t *testing.T) {
	tests := []struct {
		name        string
		state       tls.ConnectionState
		wantService string
		wantOK      bool
	}{
		{"service", verifiedState(t, "spiffe://lastmile/dispatch"), "dispatch", true},
		{"service with digits and hyphen", verifiedState(t, "spiffe://lastmile/route-2"), "route-2", true},
		{"no URI", verifiedState(t), "", false},
		{"two URIs", verifiedState(t, "spiffe://lastmile/dispatch", "spiffe://lastmile/courier"), "", false},
		{"other trust domain", verifiedState(t, "spiffe://elsewhere/dispatch"), "", false},
		{"other scheme", verifiedState(t, "https://lastmile/dispatch"), "", false},
		{"upper case", verifiedState(t, "spiffe://lastmile/Dispatch"), "", false},
		{"leading digit", verifiedState(t, "spiffe://lastmile/1dispatch"), "", false},
		{"nested path", verifiedState(t, "spiffe://lastmile/ns/dispatch"), "", false},
		{"empty path", verifiedState(t, "spiffe://lastmile"), "", false},
		{"query", verifiedState(t, "spiffe://lastmile/dispatch?x=1"), "", false},
		{"fragment", verifiedState(t, "spiffe://lastmile/dispatch#x"), "", false},
		{"port", verifiedState(t, "spiffe://lastmile:443/dispatch"), "", false},
		{"user info", verifiedState(t, "spiffe://u@lastmile/dispatch"), "", false},
		{"escaped path", verifiedState(t, "spiffe://lastmile/dis%2Fpatch"), "", false},
		{"63 characters", verifiedState(t, "spiffe://lastmile/"+strings.Repeat("a", 63)), strings.Repeat("a", 63), true},
		{"64 characters", verifiedState(t, "spiffe://lastmile/"+strings.Repeat("a", 64)), "", false},
		{
			name: "unverified certificate",
			state: tls.ConnectionState{PeerCertificates: []*x509.Certificate{
				{URIs: []*url.URL{mustParseURL(t, "spiffe://lastmile/dispatch")}},
			}},
		},
		{"no connection state", tls.ConnectionState{}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			service, ok := tlsutil.PeerServiceIdentity(tt.state)
			if service != tt.wantService || ok != tt.wantOK {
				t.Errorf("PeerServiceIdentity = %q, %t; want %q, %t", service, ok, tt.wantService, tt.wantOK)
			}
		})
	}
}

func TestServiceFromContext(t *testing.T) {
	tests := []struct {
		name        string
		ctx         context.Context
		wantService string
		wantOK      bool
	}{
		{"no peer", context.Background(), "", false},
		{
			name: "peer without TLS",
			ctx:  peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{}}),
		},
		{
			name:        "TLS peer with identity",
			ctx:         peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: verifiedState(t, "spiffe://lastmile/courier")}}),
			wantService: "courier",
			wantOK:      true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			service, ok := tlsutil.ServiceFromContext(tt.ctx)
			if service != tt.wantService || ok != tt.wantOK {
				t.Errorf("ServiceFromContext = %q, %t; want %q, %t", service, ok, tt.wantService, tt.wantOK)
			}
		})
	}
}

// TestGRPCServiceIdentity checks the configurations with grpc's own TLS credentials (which insist on ALPN
// h2) and ServiceFromContext on the context grpc hands to interceptors.
func TestGRPCServiceIdentity(t *testing.T) {
	pki := devPKI(t)
	type identity struct {
		service string
		ok      bool
	}
	seen := make(chan identity, 1)
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(serverConfig(t, pki))),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			service, ok := tlsutil.ServiceFromContext(ctx)
			seen <- identity{service, ok}
			return handler(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	tests := []struct {
		name    string
		service string // client certificate to present; "" for none
		want    identity
	}{
		{"service certificate", "gateway", identity{"gateway", true}},
		{"no certificate", "", identity{"", false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var certFile, keyFile string
			if tt.service != "" {
				certFile, keyFile = pki.ClientCert(tt.service)
			}
			conn, err := grpc.NewClient("localhost:"+portOf(t, ln.Addr()),
				grpc.WithTransportCredentials(credentials.NewTLS(clientConfig(t, certFile, keyFile, pki.CAFile()))))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("Check: %v", err)
			}
			select {
			case got := <-seen:
				if got != tt.want {
					t.Errorf("ServiceFromContext = %q, %t; want %q, %t", got.service, got.ok, tt.want.service, tt.want.ok)
				}
			case <-time.After(waitLimit):
				t.Fatal("interceptor did not run")
			}
		})
	}
}

func portOf(t *testing.T, addr net.Addr) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	return port
}
