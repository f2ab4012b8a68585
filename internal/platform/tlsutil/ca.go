package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

const (
	caValidity = 10 * 365 * 24 * time.Hour
	// DefaultCertValidity is the lifetime of a certificate issued by EnsureCert when CertOptions.Validity is 0.
	DefaultCertValidity = 365 * 24 * time.Hour
	// RenewBefore is how long before expiry EnsureCert stops reusing a certificate and issues a new one, so a
	// process restarted now does not run into an expiry before its next restart.
	RenewBefore = 30 * 24 * time.Hour
	// clockSkew backdates NotBefore so that peers whose clocks run slightly behind accept a fresh certificate.
	clockSkew = 5 * time.Minute
)

// certName is the shape of a certificate name in EnsureCert: it becomes a file name, so no separators and
// no leading dot.
var certName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CA is a certificate authority whose certificate and private key are files in a directory. It issues the
// development certificates of a lastmile deployment. A CA is safe for concurrent use, but EnsureCert calls
// for the same name must not run concurrently (they would race to replace the same files).
type CA struct {
	cert     *x509.Certificate
	key      crypto.Signer
	certFile string
}

// EnsureCA loads the CA stored as dir/ca.crt and dir/ca.key, or creates one (ECDSA P-256, valid ten years)
// when neither exists. dir is created with mode 0700 if missing; the key is written with mode 0600, and both
// files are replaced atomically so a crash never leaves half a key. EnsureCA refuses a ca.key that is
// readable by group or others, a ca.crt without its key, a certificate that is not a CA, a key that does not
// match the certificate and an expired CA. It is not meant for several processes creating the same CA at
// the same moment: the last writer wins.
func EnsureCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA directory: %w", err)
	}
	certFile := filepath.Join(dir, "ca.crt")
	keyFile := filepath.Join(dir, "ca.key")
	haveCert, err := exists(certFile)
	if err != nil {
		return nil, fmt.Errorf("stat CA certificate: %w", err)
	}
	haveKey, err := exists(keyFile)
	if err != nil {
		return nil, fmt.Errorf("stat CA key: %w", err)
	}
	switch {
	case haveCert && haveKey:
		return loadCA(certFile, keyFile)
	case haveCert:
		return nil, fmt.Errorf("CA certificate %s exists without its key %s: restore the key, or delete the certificate to create a new CA", certFile, keyFile)
	default:
		// A key without a certificate is what a crash during creation leaves behind (the key is written
		// first); nothing was ever signed with it, so starting over is safe.
		return createCA(certFile, keyFile)
	}
}

func loadCA(certFile, keyFile string) (*CA, error) {
	if err := checkPrivateKeyMode(keyFile); err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	certPEM, err := readPEMFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	cert, err := parseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA certificate %s: %w", certFile, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("load CA certificate %s: not a CA certificate", certFile)
	}
	if now := time.Now(); now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("load CA certificate %s: valid only from %s to %s; delete ca.crt and ca.key to create a new CA",
			certFile, cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	}
	keyPEM, err := readPEMFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA key %s: %w", keyFile, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("load CA: key %s does not match certificate %s", keyFile, certFile)
	}
	return &CA{cert: cert, key: key, certFile: certFile}, nil
}

func createCA(certFile, keyFile string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"lastmile"}, CommonName: "lastmile development CA"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// The CA signs leaf certificates only; an intermediate issued from a stolen leaf key is then useless.
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	if err := writeKeyPair(certFile, keyFile, der, key); err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	return &CA{cert: cert, key: key, certFile: certFile}, nil
}

// CertFile returns the path of the CA certificate, the trust anchor servers and clients are configured with.
func (ca *CA) CertFile() string { return ca.certFile }

// CertOptions describes the certificate EnsureCert issues.
type CertOptions struct {
	// Hosts are the DNS names and IP addresses the certificate is valid for (subject alternative names).
	// Server certificates always include localhost, 127.0.0.1 and ::1.
	Hosts []string
	// Service, if set, adds the URI SAN spiffe://lastmile/<Service>, the identity PeerServiceIdentity reads.
	// It must match ^[a-z][a-z0-9-]{0,62}$.
	Service string
	// Server allows the certificate to authenticate a TLS server.
	Server bool
	// Client allows the certificate to authenticate a TLS client.
	Client bool
	// Validity is the certificate's lifetime, DefaultCertValidity when 0. It never extends past the CA's
	// expiry. A validity not longer than RenewBefore gives a certificate that every call reissues.
	Validity time.Duration
}

// certRequest is CertOptions validated and normalised.
type certRequest struct {
	dnsNames []string
	ips      []net.IP
	uri      *url.URL
	usages   []x509.ExtKeyUsage
	validity time.Duration
}

func (o CertOptions) request() (certRequest, error) {
	var r certRequest
	if !o.Server && !o.Client {
		// An empty ExtKeyUsage would let the certificate act as anything; make the caller choose.
		return r, errors.New("certificate options: set Server, Client or both")
	}
	if o.Server {
		r.usages = append(r.usages, x509.ExtKeyUsageServerAuth)
	}
	if o.Client {
		r.usages = append(r.usages, x509.ExtKeyUsageClientAuth)
	}
	switch {
	case o.Validity < 0:
		return r, fmt.Errorf("certificate options: negative validity %s", o.Validity)
	case o.Validity == 0:
		r.validity = DefaultCertValidity
	default:
		r.validity = o.Validity
	}
	if o.Service != "" {
		if !serviceName.MatchString(o.Service) {
			return r, fmt.Errorf("certificate options: service %q does not match %s", o.Service, serviceName)
		}
		r.uri = SPIFFEID(o.Service)
	}
	hosts := o.Hosts
	if o.Server {
		hosts = append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(r.ips, ip.Equal) {
				r.ips = append(r.ips, ip)
			}
			continue
		}
		name := strings.ToLower(h)
		if !validDNSName(name) {
			return r, fmt.Errorf("certificate options: host %q is neither an IP address nor a DNS name", h)
		}
		if !slices.Contains(r.dnsNames, name) {
			r.dnsNames = append(r.dnsNames, name)
		}
	}
	return r, nil
}

// validDNSName accepts a lower-case host name, optionally with a leading wildcard label. It rejects the
// mistakes flags invite, such as "host:port", URLs and empty names.
func validDNSName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for i, label := range strings.Split(name, ".") {
		if i == 0 && label == "*" {
			continue
		}
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}

// EnsureCert makes dir/<name>.crt and dir/<name>.key hold a certificate issued by ca as opts describe, and
// returns their paths. Existing files are reused when they are signed by ca, cover the requested host names,
// IP addresses and key usages, carry exactly the requested service identity and remain valid for more than
// RenewBefore; otherwise a new key and certificate replace them. It refuses an existing key file that is
// readable by group or others. name must be a plain file name ([a-z0-9][a-z0-9._-]*) other than "ca".
func (ca *CA) EnsureCert(dir, name string, opts CertOptions) (certFile, keyFile string, err error) {
	if !certName.MatchString(name) || name == "ca" {
		return "", "", fmt.Errorf("certificate name %q: want [a-z0-9][a-z0-9._-]{0,62}, not \"ca\"", name)
	}
	req, err := opts.request()
	if err != nil {
		return "", "", fmt.Errorf("certificate %s: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("certificate %s: create directory: %w", name, err)
	}
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	reuse, err := ca.reusable(certFile, keyFile, req)
	if err != nil {
		return "", "", fmt.Errorf("certificate %s: %w", name, err)
	}
	if reuse {
		return certFile, keyFile, nil
	}
	if err := ca.issue(certFile, keyFile, name, req); err != nil {
		return "", "", fmt.Errorf("certificate %s: %w", name, err)
	}
	return certFile, keyFile, nil
}

// reusable reports whether the existing files satisfy req. Missing, corrupt or mismatched files are not an
// error — they are replaced — but a key with loose permissions is.
func (ca *CA) reusable(certFile, keyFile string, req certRequest) (bool, error) {
	haveKey, err := exists(keyFile)
	if err != nil {
		return false, err
	}
	if !haveKey {
		return false, nil
	}
	if err := checkPrivateKeyMode(keyFile); err != nil {
		return false, err
	}
	certPEM, err := readPEMFile(certFile)
	if err != nil {
		return false, nil
	}
	keyPEM, err := readPEMFile(keyFile)
	if err != nil {
		return false, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, nil
	}
	leaf := pair.Leaf
	if leaf == nil {
		// Leaf is filled in unless GODEBUG x509keypairleaf=0 turns that off.
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return false, nil
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	// Key usages are compared below: Verify accepts a chain that allows any one of them, not all.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return false, nil
	}
	if time.Until(leaf.NotAfter) <= RenewBefore {
		return false, nil
	}
	return covers(leaf, req), nil
}

func covers(leaf *x509.Certificate, req certRequest) bool {
	for _, u := range req.usages {
		if !slices.Contains(leaf.ExtKeyUsage, u) {
			return false
		}
	}
	for _, name := range req.dnsNames {
		if !slices.ContainsFunc(leaf.DNSNames, func(s string) bool { return strings.EqualFold(s, name) }) {
			return false
		}
	}
	for _, ip := range req.ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	// Identity must match exactly: a certificate that still names a former service would grant its rights.
	if req.uri == nil {
		return len(leaf.URIs) == 0
	}
	return len(leaf.URIs) == 1 && leaf.URIs[0].String() == req.uri.String()
}

func (ca *CA) issue(certFile, keyFile, name string, req certRequest) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	now := time.Now()
	notAfter := now.Add(req.validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		// SerialNumber is left nil: CreateCertificate then draws a random RFC 5280 serial.
		Subject:               pkix.Name{Organization: []string{"lastmile"}, CommonName: name},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           req.usages,
		BasicConstraintsValid: true,
		DNSNames:              req.dnsNames,
		IPAddresses:           req.ips,
	}
	if req.uri != nil {
		tmpl.URIs = []*url.URL{req.uri}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	return writeKeyPair(certFile, keyFile, der, key)
}

// writeKeyPair writes the key first: a crash between the two renames leaves a key that does not match the
// old certificate, which EnsureCert detects and replaces and a reloading server ignores until the new
// certificate lands — never a certificate whose key is lost.
func writeKeyPair(certFile, keyFile string, certDER []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644)
}

func parseCertificatePEM(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no CERTIFICATE PEM block")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// parsePrivateKeyPEM accepts the PKCS #8 keys this package writes and the SEC 1 and PKCS #1 encodings that
// openssl produces, so an operator may bring their own CA.
func parsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no private key PEM block")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", key)
		}
		return signer, nil
	}
}
