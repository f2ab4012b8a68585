package tlsutil_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/platform/tlsutil"
)

// devPKI creates a development PKI in a temporary directory.
func devPKI(t *testing.T) *tlsutil.PKI {
	t.Helper()
	pki, err := tlsutil.EnsureDevPKI(t.TempDir(), nil, testIdentities...)
	if err != nil {
		t.Fatal(err)
	}
	return pki
}

func serverConfig(t *testing.T, pki *tlsutil.PKI) *tls.Config {
	t.Helper()
	certFile, keyFile := pki.ServerCert()
	cfg, err := tlsutil.ServerConfig(certFile, keyFile, pki.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func clientConfig(t *testing.T, certFile, keyFile, caFile string) *tls.Config {
	t.Helper()
	cfg, err := tlsutil.ClientConfig(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestHandshakeServiceIdentity(t *testing.T) {
	pki := devPKI(t)
	certFile, keyFile := pki.ClientCert("dispatch")
	res := handshake(t, serverConfig(t, pki), clientConfig(t, certFile, keyFile, pki.CAFile()))
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("handshake: server error %v, client error %v; want none", res.serverErr, res.clientErr)
	}
	if got, want := res.server.Version, uint16(tls.VersionTLS13); got != want {
		t.Errorf("TLS version = %#x, want %#x", got, want)
	}
	service, ok := tlsutil.PeerServiceIdentity(res.server)
	if service != "dispatch" || !ok {
		t.Errorf("PeerServiceIdentity = %q, %t; want %q, true", service, ok, "dispatch")
	}
	// The server certificate names no service, so the client learns no identity from it.
	if service, ok := tlsutil.PeerServiceIdentity(res.client); ok {
		t.Errorf("client side PeerServiceIdentity = %q, true; want false", service)
	}
}

func TestHandshakeWithoutClientCertificate(t *testing.T) {
	pki := devPKI(t)
	res := handshake(t, serverConfig(t, pki), clientConfig(t, "", "", pki.CAFile()))
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("handshake: server error %v, client error %v; want none", res.serverErr, res.clientErr)
	}
	if got := len(res.server.PeerCertificates); got != 0 {
		t.Errorf("server saw %d peer certificates, want 0", got)
	}
	if service, ok := tlsutil.PeerServiceIdentity(res.server); ok {
		t.Errorf("PeerServiceIdentity = %q, true; want false", service)
	}
}

func TestHandshakeRejectsClientOfForeignCA(t *testing.T) {
	pki := devPKI(t)
	foreign := devPKI(t)
	certFile, keyFile := foreign.ClientCert("dispatch")
	// The client trusts the server's CA; only its own certificate is foreign.
	res := handshake(t, serverConfig(t, pki), clientConfig(t, certFile, keyFile, pki.CAFile()))
	if res.serverErr == nil {
		t.Fatalf("server handshake with a foreign client certificate = nil error, want an error")
	}
	if res.clientErr == nil {
		t.Errorf("client handshake with a foreign client certificate = nil error, want an error")
	}
}

func TestHandshakeRejectsServerOfForeignCA(t *testing.T) {
	pki := devPKI(t)
	foreign := devPKI(t)
	res := handshake(t, serverConfig(t, foreign), clientConfig(t, "", "", pki.CAFile()))
	if res.clientErr == nil {
		t.Fatalf("client handshake with a server of a foreign CA = nil error, want an error")
	}
}

func TestHandshakeForeignTrustDomain(t *testing.T) {
	pki := devPKI(t)
	dir := filepath.Dir(pki.CAFile())
	writeLeaf(t, dir, dir, "impostor", &x509.Certificate{
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{{Scheme: "spiffe", Host: "elsewhere", Path: "/dispatch"}},
	})
	res := handshake(t, serverConfig(t, pki), clientConfig(t, filepath.Join(dir, "impostor.crt"), filepath.Join(dir, "impostor.key"), pki.CAFile()))
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("handshake: server error %v, client error %v; want none", res.serverErr, res.clientErr)
	}
	if service, ok := tlsutil.PeerServiceIdentity(res.server); ok {
		t.Errorf("PeerServiceIdentity for spiffe://elsewhere/dispatch = %q, true; want false", service)
	}
}

// serverSerial returns the serial of the certificate the server presents in a new handshake.
func serverSerial(t *testing.T, serverCfg, clientCfg *tls.Config) string {
	t.Helper()
	res := handshake(t, serverCfg, clientCfg)
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("handshake: server error %v, client error %v; want none", res.serverErr, res.clientErr)
	}
	return res.client.PeerCertificates[0].SerialNumber.String()
}

// waitForServerSerial performs handshakes until the server presents the certificate with serial want. The
// server checks its files at most once per second, so the first handshakes may still see the old one.
func waitForServerSerial(t *testing.T, serverCfg, clientCfg *tls.Config, want string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got := serverSerial(t, serverCfg, clientCfg)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server serial = %s after %s, want %s", got, waitLimit, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reissueServerCert replaces the server certificate and key with new ones and returns the new serial.
func reissueServerCert(t *testing.T, pki *tlsutil.PKI, host string) string {
	t.Helper()
	certFile, _ := pki.ServerCert()
	dir := filepath.Dir(certFile)
	// A host the current certificate lacks forces EnsureCert to issue a new one.
	if _, _, err := pki.CA().EnsureCert(dir, "server", tlsutil.CertOptions{Server: true, Hosts: []string{host}}); err != nil {
		t.Fatal(err)
	}
	return serial(t, certFile)
}

func TestServerConfigReloadsCertificate(t *testing.T) {
	t.Parallel()
	pki := devPKI(t)
	serverCfg := serverConfig(t, pki)
	clientCfg := clientConfig(t, "", "", pki.CAFile())
	certFile, _ := pki.ServerCert()
	old := serial(t, certFile)
	if got := serverSerial(t, serverCfg, clientCfg); got != old {
		t.Fatalf("server serial = %s, want %s", got, old)
	}

	waitForServerSerial(t, serverCfg, clientCfg, reissueServerCert(t, pki, "reload.example"))
}

func TestServerConfigKeepsPairWhenFilesBreak(t *testing.T) {
	t.Parallel()
	pki := devPKI(t)
	serverCfg := serverConfig(t, pki)
	clientCfg := clientConfig(t, "", "", pki.CAFile())
	certFile, _ := pki.ServerCert()
	old := serial(t, certFile)

	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Let the once-per-second check come due, so the next handshake really reads the broken file.
	time.Sleep(1100 * time.Millisecond)
	if got := serverSerial(t, serverCfg, clientCfg); got != old {
		t.Fatalf("server serial with broken files = %s, want the old %s", got, old)
	}

	// A failed reload must not stop later ones.
	waitForServerSerial(t, serverCfg, clientCfg, reissueServerCert(t, pki, "repaired.example"))
}

func TestClientConfigReloadsCertificate(t *testing.T) {
	t.Parallel()
	pki := devPKI(t)
	serverCfg := serverConfig(t, pki)
	certFile, keyFile := pki.ClientCert("courier")
	clientCfg := clientConfig(t, certFile, keyFile, pki.CAFile())
	if res := handshake(t, serverCfg, clientCfg); res.serverErr != nil {
		t.Fatalf("server handshake: %v", res.serverErr)
	}

	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.CA().EnsureCert(filepath.Dir(certFile), "courier", tlsutil.CertOptions{Service: "courier", Client: true}); err != nil {
		t.Fatal(err)
	}
	want := serial(t, certFile)
	deadline := time.Now().Add(waitLimit)
	for {
		res := handshake(t, serverCfg, clientCfg)
		if res.serverErr != nil {
			t.Fatalf("server handshake: %v", res.serverErr)
		}
		got := res.server.PeerCertificates[0].SerialNumber.String()
		if got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client serial = %s after %s, want %s", got, waitLimit, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConfigErrors(t *testing.T) {
	pki := devPKI(t)
	serverCert, serverKey := pki.ServerCert()
	clientCert, clientKey := pki.ClientCert("route")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	t.Run("server", func(t *testing.T) {
		tests := []struct{ name, cert, key, ca string }{
			{"missing CA", serverCert, serverKey, missing},
			{"CA file without certificates", serverCert, serverKey, serverKey},
			{"missing certificate", missing, serverKey, pki.CAFile()},
			{"key of another certificate", serverCert, clientKey, pki.CAFile()},
		}
		for _, tt := range tests {
			if _, err := tlsutil.ServerConfig(tt.cert, tt.key, tt.ca); err == nil {
				t.Errorf("%s: ServerConfig(%q, %q, %q) = nil error, want an error", tt.name, tt.cert, tt.key, tt.ca)
			}
		}
	})
	t.Run("client", func(t *testing.T) {
		tests := []struct{ name, cert, key, ca string }{
			{"missing CA", "", "", missing},
			{"certificate without key", clientCert, "", pki.CAFile()},
			{"key without certificate", "", clientKey, pki.CAFile()},
			{"missing certificate", missing, clientKey, pki.CAFile()},
		}
		for _, tt := range tests {
			if _, err := tlsutil.ClientConfig(tt.cert, tt.key, tt.ca); err == nil {
				t.Errorf("%s: ClientConfig(%q, %q, %q) = nil error, want an error", tt.name, tt.cert, tt.key, tt.ca)
			}
		}
	})
}

func TestServerConfigSettings(t *testing.T) {
	cfg := serverConfig(t, devPKI(t))
	if got, want := cfg.MinVersion, uint16(tls.VersionTLS12); got != want {
		t.Errorf("MinVersion = %#x, want %#x", got, want)
	}
	if got, want := cfg.ClientAuth, tls.VerifyClientCertIfGiven; got != want {
		t.Errorf("ClientAuth = %v, want %v", got, want)
	}
	if diff := cmp.Diff([]string{"h2"}, cfg.NextProtos); diff != "" {
		t.Errorf("NextProtos (-want +got):\n%s", diff)
	}
}
