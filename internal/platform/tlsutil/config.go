package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// reloadInterval bounds how often a handshake looks at the certificate files: a stat per second is
// negligible, and rotation tools do not need faster pickup.
const reloadInterval = time.Second

// ServerConfig returns a TLS configuration for a lastmile server: TLS 1.2 or later (Go negotiates 1.3 with
// any client that offers it), h2 for gRPC, and client certificates verified against caFile when a client
// presents one (tls.VerifyClientCertIfGiven): services authenticate with certificates, end users with a
// bearer token over plain server-authenticated TLS. The key pair is loaded now, so a broken one fails here,
// and reloaded when certFile or keyFile change (see ClientConfig). caFile is read once.
func ServerConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	pool, err := loadCertPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("server TLS: %w", err)
	}
	r, err := newKeyPairReloader(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("server TLS: %w", err)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.get(), nil
		},
	}, nil
}

// ClientConfig returns a TLS configuration for a client of lastmile servers: TLS 1.2 or later, servers
// verified against caFile, and, when certFile and keyFile are set, that client certificate as the caller's
// service identity. With both empty the client connects without identity, as courier apps and tools like
// grpcurl do. Like ServerConfig it loads the key pair now and reloads it on a later handshake once the
// files' modification time, size or identity changed, checking at most once per second; if the new files
// do not form a valid pair the previous one stays in use and the check repeats a second later. The caller
// sets ServerName unless the dialer does (grpc's credentials.NewTLS uses the target's authority).
func ClientConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	pool, err := loadCertPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		RootCAs:    pool,
	}
	switch {
	case certFile == "" && keyFile == "":
		return cfg, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("client TLS: set both the certificate and the key file, or neither")
	}
	r, err := newKeyPairReloader(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return r.get(), nil
	}
	return cfg, nil
}

func loadCertPool(caFile string) (*x509.CertPool, error) {
	data, err := readPEMFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("load CA %s: no certificates", caFile)
	}
	return pool, nil
}

// keyPairReloader serves a key pair and replaces it when its files change. Handshakes never wait on disk
// I/O of another handshake: the one that finds the check due claims it with a compare-and-swap, everyone
// else keeps using the current pair.
type keyPairReloader struct {
	certFile, keyFile string
	current           atomic.Pointer[loadedPair]
	nextCheck         atomic.Int64 // Unix nanoseconds
}

// loadedPair is a key pair with the state of the files it was read from.
type loadedPair struct {
	cert     *tls.Certificate
	certInfo os.FileInfo
	keyInfo  os.FileInfo
}

func newKeyPairReloader(certFile, keyFile string) (*keyPairReloader, error) {
	r := &keyPairReloader{certFile: certFile, keyFile: keyFile}
	p, err := r.load()
	if err != nil {
		return nil, err
	}
	r.current.Store(p)
	r.nextCheck.Store(time.Now().Add(reloadInterval).UnixNano())
	return r, nil
}

// get returns the key pair to present. The constructor stored one, so there always is one.
func (r *keyPairReloader) get() *tls.Certificate {
	now := time.Now().UnixNano()
	if next := r.nextCheck.Load(); now >= next && r.nextCheck.CompareAndSwap(next, now+int64(reloadInterval)) {
		r.reloadIfChanged()
	}
	return r.current.Load().cert
}

func (r *keyPairReloader) reloadIfChanged() {
	old := r.current.Load()
	certInfo, err := os.Stat(r.certFile)
	if err != nil {
		return
	}
	keyInfo, err := os.Stat(r.keyFile)
	if err != nil {
		return
	}
	if sameFile(old.certInfo, certInfo) && sameFile(old.keyInfo, keyInfo) {
		return
	}
	// A failed load keeps the old pair and leaves the recorded file state alone, so the next check retries:
	// the files may be half-way through a rotation (new key, old certificate).
	if p, err := r.load(); err == nil {
		r.current.Store(p)
	}
}

// load stats the files before reading them: if they change in between, the recorded state is older than
// the content and the next check reloads again, rather than missing the change.
func (r *keyPairReloader) load() (*loadedPair, error) {
	certInfo, err := os.Stat(r.certFile)
	if err != nil {
		return nil, fmt.Errorf("load key pair: %w", err)
	}
	keyInfo, err := os.Stat(r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("load key pair: %w", err)
	}
	certPEM, err := readPEMFile(r.certFile)
	if err != nil {
		return nil, fmt.Errorf("load key pair: %w", err)
	}
	keyPEM, err := readPEMFile(r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("load key pair: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load key pair %s, %s: %w", r.certFile, r.keyFile, err)
	}
	return &loadedPair{cert: &cert, certInfo: certInfo, keyInfo: keyInfo}, nil
}

// sameFile reports whether a file is unchanged. Modification time alone misses a replacement within the
// file system's timestamp granularity; an atomic rename always changes the file's identity (inode).
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}
