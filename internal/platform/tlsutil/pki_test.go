package tlsutil_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/platform/tlsutil"
)

// testIdentities are the service identities the tests issue client certificates for.
var testIdentities = []string{"identity", "courier", "route", "dispatch", "gateway", "simulator"}

// serials returns the serial of the CA and of every certificate of the development PKI, by file name.
func serials(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{"ca": serial(t, filepath.Join(dir, "ca.crt")), "server": serial(t, filepath.Join(dir, "server.crt"))}
	for _, svc := range testIdentities {
		got[svc] = serial(t, filepath.Join(dir, svc+".crt"))
	}
	return got
}

func TestEnsureDevPKIIsIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := tlsutil.EnsureDevPKI(dir, []string{"lastmile.example"}, testIdentities...); err != nil {
		t.Fatal(err)
	}
	first := serials(t, dir)
	if _, err := tlsutil.EnsureDevPKI(dir, []string{"lastmile.example"}, testIdentities...); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, serials(t, dir)); diff != "" {
		t.Errorf("serials after second EnsureDevPKI (-first +second):\n%s", diff)
	}
}

func TestEnsureDevPKIFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := tlsutil.EnsureDevPKI(dir, nil, testIdentities...); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{"tls": 0o700, "ca.key": 0o600, "ca.crt": 0o644, "server.key": 0o600, "server.crt": 0o644}
	for _, svc := range testIdentities {
		want[svc+".key"] = 0o600
		want[svc+".crt"] = 0o644
	}
	got := map[string]os.FileMode{}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	got["tls"] = fi.Mode().Perm()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = info.Mode().Perm()
	}
	// Exact equality also proves that no temporary files are left behind.
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("file modes (-want +got):\n%s", diff)
	}
}

func TestEnsureDevPKICertificates(t *testing.T) {
	dir := t.TempDir()
	pki, err := tlsutil.EnsureDevPKI(dir, []string{"Lastmile.Example", "10.0.0.7"}, testIdentities...)
	if err != nil {
		t.Fatal(err)
	}
	certFile, _ := pki.ServerCert()
	server := readCert(t, certFile)
	if diff := cmp.Diff([]string{"localhost", "lastmile.example"}, server.DNSNames); diff != "" {
		t.Errorf("server DNS names (-want +got):\n%s", diff)
	}
	gotIPs := make([]string, len(server.IPAddresses))
	for i, ip := range server.IPAddresses {
		gotIPs[i] = ip.String()
	}
	if diff := cmp.Diff([]string{"127.0.0.1", "::1", "10.0.0.7"}, gotIPs); diff != "" {
		t.Errorf("server IP addresses (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, server.ExtKeyUsage); diff != "" {
		t.Errorf("server key usages (-want +got):\n%s", diff)
	}
	if len(server.URIs) != 0 {
		t.Errorf("server URIs = %v, want none", server.URIs)
	}

	ca := readCert(t, pki.CAFile())
	if !ca.IsCA {
		t.Errorf("CA IsCA = false, want true")
	}
	for _, svc := range testIdentities {
		certFile, _ := pki.ClientCert(svc)
		c := readCert(t, certFile)
		if got, want := len(c.URIs), 1; got != want {
			t.Fatalf("%s: %d URIs, want %d", svc, got, want)
		}
		if got, want := c.URIs[0].String(), "spiffe://lastmile/"+svc; got != want {
			t.Errorf("%s: URI = %q, want %q", svc, got, want)
		}
		if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, c.ExtKeyUsage); diff != "" {
			t.Errorf("%s: key usages (-want +got):\n%s", svc, diff)
		}
		if err := c.CheckSignatureFrom(ca); err != nil {
			t.Errorf("%s: CheckSignatureFrom(CA) = %v, want nil", svc, err)
		}
	}
}

// removeCert deletes dir/<name>.crt so that the next EnsureCert issues a certificate with other options.
func removeCert(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name+".crt")); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureDevPKIReissues(t *testing.T) {
	hosts := []string{"lastmile.example"}
	tests := []struct {
		name  string
		setup func(t *testing.T, ca *tlsutil.CA, dir string)
	}{
		{
			name: "near expiry",
			setup: func(t *testing.T, ca *tlsutil.CA, dir string) {
				removeCert(t, dir, "server")
				if _, _, err := ca.EnsureCert(dir, "server", tlsutil.CertOptions{Hosts: hosts, Server: true, Validity: 24 * time.Hour}); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "expired",
			setup: func(t *testing.T, _ *tlsutil.CA, dir string) {
				writeLeaf(t, dir, dir, "server", &x509.Certificate{
					NotBefore:   time.Now().Add(-48 * time.Hour),
					NotAfter:    time.Now().Add(-time.Hour),
					ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
					DNSNames:    []string{"localhost", "lastmile.example"},
					IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
				})
			},
		},
		{
			name: "signed by another CA",
			setup: func(t *testing.T, _ *tlsutil.CA, dir string) {
				other, err := tlsutil.EnsureCA(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := other.EnsureCert(dir, "server", tlsutil.CertOptions{Hosts: hosts, Server: true}); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "missing host",
			setup: func(t *testing.T, ca *tlsutil.CA, dir string) {
				removeCert(t, dir, "server")
				if _, _, err := ca.EnsureCert(dir, "server", tlsutil.CertOptions{Server: true}); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "key does not match",
			setup: func(t *testing.T, ca *tlsutil.CA, dir string) {
				if _, _, err := ca.EnsureCert(dir, "other", tlsutil.CertOptions{Hosts: hosts, Server: true}); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(filepath.Join(dir, "other.key"), filepath.Join(dir, "server.key")); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pki, err := tlsutil.EnsureDevPKI(dir, hosts, testIdentities...)
			if err != nil {
				t.Fatal(err)
			}
			certFile, keyFile := pki.ServerCert()
			tt.setup(t, pki.CA(), dir)
			before := serial(t, certFile)

			if _, err := tlsutil.EnsureDevPKI(dir, hosts, testIdentities...); err != nil {
				t.Fatal(err)
			}
			after := readCert(t, certFile)
			if after.SerialNumber.String() == before {
				t.Fatalf("serial after EnsureDevPKI = %s, want a new certificate", before)
			}
			if err := after.CheckSignatureFrom(readCert(t, pki.CAFile())); err != nil {
				t.Errorf("new certificate: CheckSignatureFrom(CA) = %v, want nil", err)
			}
			if remaining := time.Until(after.NotAfter); remaining <= tlsutil.RenewBefore {
				t.Errorf("new certificate expires in %s, want more than %s", remaining, tlsutil.RenewBefore)
			}
			if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
				t.Errorf("new key pair: %v", err)
			}
		})
	}
}

func TestEnsureCARefusesReadableKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := tlsutil.EnsureCA(dir); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "ca.key")
	if err := os.Chmod(keyFile, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsutil.EnsureCA(dir); err == nil {
		t.Fatalf("EnsureCA with a group-readable ca.key = nil error, want an error")
	}
	if _, err := tlsutil.EnsureDevPKI(dir, nil, testIdentities...); err == nil {
		t.Fatalf("EnsureDevPKI with a group-readable ca.key = nil error, want an error")
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o640); got != want {
		t.Errorf("ca.key mode after refusal = %#o, want %#o (left alone)", got, want)
	}
}

func TestEnsureCertRefusesReadableKey(t *testing.T) {
	dir := t.TempDir()
	pki, err := tlsutil.EnsureDevPKI(dir, nil, testIdentities...)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "dispatch.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.CA().EnsureCert(dir, "dispatch", tlsutil.CertOptions{Service: "dispatch", Client: true}); err == nil {
		t.Errorf("EnsureCert with a world-readable key = nil error, want an error")
	}
}

func TestEnsureCARefusesCertificateWithoutKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := tlsutil.EnsureCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsutil.EnsureCA(dir); err == nil {
		t.Errorf("EnsureCA with ca.crt but no ca.key = nil error, want an error")
	}
}

func TestEnsureCAReloadsSameCA(t *testing.T) {
	dir := t.TempDir()
	first, err := tlsutil.EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	before := serial(t, first.CertFile())
	second, err := tlsutil.EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := serial(t, second.CertFile()); got != before {
		t.Errorf("CA serial after second EnsureCA = %s, want %s", got, before)
	}
	ca := readCert(t, second.CertFile())
	if got, want := ca.NotAfter.Sub(ca.NotBefore).Round(24*time.Hour), 10*365*24*time.Hour; got != want {
		t.Errorf("CA lifetime = %s, want %s", got, want)
	}
}

func TestEnsureCertRejectsInvalidOptions(t *testing.T) {
	ca, err := tlsutil.EnsureCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		certName string
		opts     tlsutil.CertOptions
	}{
		{"empty name", "", tlsutil.CertOptions{Server: true}},
		{"path in name", "../server", tlsutil.CertOptions{Server: true}},
		{"hidden name", ".server", tlsutil.CertOptions{Server: true}},
		{"name of the CA", "ca", tlsutil.CertOptions{Server: true}},
		{"no key usage", "server", tlsutil.CertOptions{}},
		{"negative validity", "server", tlsutil.CertOptions{Server: true, Validity: -time.Hour}},
		{"upper-case service", "x", tlsutil.CertOptions{Client: true, Service: "Dispatch"}},
		{"service with slash", "x", tlsutil.CertOptions{Client: true, Service: "a/b"}},
		{"host with port", "server", tlsutil.CertOptions{Server: true, Hosts: []string{"localhost:9090"}}},
		{"URL as host", "server", tlsutil.CertOptions{Server: true, Hosts: []string{"https://example.com"}}},
		{"empty host", "server", tlsutil.CertOptions{Server: true, Hosts: []string{""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := ca.EnsureCert(dir, tt.certName, tt.opts); err == nil {
				t.Errorf("EnsureCert(%q, %+v) = nil error, want an error", tt.certName, tt.opts)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("EnsureCert left %d files behind, want none", len(entries))
			}
		})
	}
}
