package tlsutil

import (
	"fmt"
	"path/filepath"
)

// PKI is the development public key infrastructure in a directory: a CA, a serving certificate and one
// client certificate per service identity. It only names files; servers and clients load them with
// ServerConfig and ClientConfig, which also pick up reissued certificates.
type PKI struct {
	dir string
	ca  *CA
}

// EnsureDevPKI creates or refreshes the development PKI in dir, typically <data-dir>/tls: the CA (see
// EnsureCA), the serving certificate "server" for localhost, 127.0.0.1, ::1 and extraHosts, and a client
// certificate named after each of identities carrying its SPIFFE ID. The caller names the identities (the
// command line derives them from its registry of services), so this package keeps no list of services.
// Certificates that are still good are reused (see EnsureCert), so calling it on every start is cheap and
// keeps serials stable.
func EnsureDevPKI(dir string, extraHosts []string, identities ...string) (*PKI, error) {
	ca, err := EnsureCA(dir)
	if err != nil {
		return nil, fmt.Errorf("development PKI: %w", err)
	}
	if _, _, err := ca.EnsureCert(dir, "server", CertOptions{Hosts: extraHosts, Server: true}); err != nil {
		return nil, fmt.Errorf("development PKI: %w", err)
	}
	for _, svc := range identities {
		if _, _, err := ca.EnsureCert(dir, svc, CertOptions{Service: svc, Client: true}); err != nil {
			return nil, fmt.Errorf("development PKI: %w", err)
		}
	}
	return &PKI{dir: dir, ca: ca}, nil
}

// CA returns the certificate authority of the PKI, to issue further certificates.
func (p *PKI) CA() *CA { return p.ca }

// CAFile returns the path of the CA certificate.
func (p *PKI) CAFile() string { return p.ca.CertFile() }

// ServerCert returns the paths of the serving certificate and its key.
func (p *PKI) ServerCert() (certFile, keyFile string) {
	return filepath.Join(p.dir, "server.crt"), filepath.Join(p.dir, "server.key")
}

// ClientCert returns the paths of the client certificate and key of service. The files exist for the
// identities given to EnsureDevPKI; for any other name ClientConfig reports them missing rather than falling back to an
// anonymous client.
func (p *PKI) ClientCert(service string) (certFile, keyFile string) {
	return filepath.Join(p.dir, service+".crt"), filepath.Join(p.dir, service+".key")
}
