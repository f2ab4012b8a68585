package tlsutil_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait in these tests.
const waitLimit = 5 * time.Second

// readCert parses the first certificate of a PEM file.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return cert
}

func serial(t *testing.T, path string) string {
	t.Helper()
	return readCert(t, path).SerialNumber.String()
}

// writeLeaf signs tmpl with the CA in caDir and writes dir/<name>.crt and dir/<name>.key, bypassing
// EnsureCert to produce certificates it would never issue (expired, foreign trust domain).
func writeLeaf(t *testing.T, caDir, dir, name string, tmpl *x509.Certificate) {
	t.Helper()
	caCert := readCert(t, filepath.Join(caDir, "ca.crt"))
	keyPEM, err := os.ReadFile(filepath.Join(caDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatal("ca.key: no PEM block")
	}
	caKey, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// handshakeResult holds both ends of one TLS handshake.
type handshakeResult struct {
	server    tls.ConnectionState
	serverErr error
	client    tls.ConnectionState
	clientErr error
}

// handshake runs one TLS handshake over 127.0.0.1 between serverCfg and clientCfg and returns what each side
// saw. The client dials with ServerName "localhost".
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	type serverSide struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan serverSide, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- serverSide{err: err}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(waitLimit))
		tc := tls.Server(conn, serverCfg)
		err = tc.Handshake()
		done <- serverSide{state: tc.ConnectionState(), err: err}
		if err == nil {
			_ = tc.Close()
		}
	}()

	var res handshakeResult
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitLimit))
	cfg := clientCfg.Clone()
	cfg.ServerName = "localhost"
	tc := tls.Client(conn, cfg)
	res.clientErr = tc.Handshake()
	if res.clientErr == nil {
		// In TLS 1.3 the client is done before the server has checked the client certificate; reading until
		// the server closes surfaces its verdict.
		if _, err := tc.Read(make([]byte, 1)); err != nil && !errors.Is(err, io.EOF) {
			res.clientErr = err
		}
	}
	res.client = tc.ConnectionState()

	select {
	case s := <-done:
		res.server, res.serverErr = s.state, s.err
	case <-time.After(waitLimit):
		t.Fatal("server handshake did not finish")
	}
	return res
}
