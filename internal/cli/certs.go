package cli

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"lastmile/internal/platform/tlsutil"
)

func runCerts(args []string, env Env) (err error) {
	fs := newFlagSet("certs", `Create (or renew) the development CA and certificates in <data-dir>/tls: a serving certificate for
localhost plus --tls-hosts, and one client certificate per service identity (spiffe://lastmile/<service>).
Existing certificates that are still valid for more than 30 days are kept. serve does this at every start.
It takes the data directory's lock, so it refuses to run while serve uses the directory: stop serve, run
certs, start it again. (A running serve reloads certificate and key files that change, so another tool may
replace them in place; it reads the CA at start only.) It ends with a grpcurl command that lists the
services of the serve listening on --grpc-addr (serve's flag and variable, only read for that line).`, env.Stdout)
	var dataDir, grpcAddr string
	hosts := listFlag{}
	fs.StringVar(&dataDir, "data-dir", "./lastmile-data", "state directory")
	fs.Var(&hosts, "tls-hosts", "extra DNS names or IPs for the server certificate (comma list)")
	fs.StringVar(&grpcAddr, "grpc-addr", ":9090", "serve's gRPC listen address, for the grpcurl command printed at the end")
	if err := fs.parse(args, env.Getenv); err != nil {
		return err
	}
	dial, err := dialAddr(grpcAddr)
	if err != nil {
		return usageError{fmt.Errorf("--grpc-addr: %w", err)}
	}
	lock, err := lockDataDir(dataDir, "certs", "stop it first (serve creates and renews the certificates at startup)")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, lock.Release()) }()
	ids := identities()
	pki, err := tlsutil.EnsureDevPKI(filepath.Join(dataDir, "tls"), hosts, ids...)
	if err != nil {
		return err // "development PKI: …"
	}
	fmt.Fprintf(env.Stdout, "CA certificate:     %s\n", pki.CAFile())
	cert, key := pki.ServerCert()
	fmt.Fprintf(env.Stdout, "server certificate: %s (key %s)\n", cert, key)
	for _, svc := range ids {
		cert, key := pki.ClientCert(svc)
		fmt.Fprintf(env.Stdout, "%-19s %s (key %s)\n", svc+" identity:", cert, key)
	}
	fmt.Fprintf(env.Stdout, "\nCall the API with grpcurl: grpcurl -cacert %s %s list\n", pki.CAFile(), dial)
	return nil
}

// dialAddr is the address a client on this machine dials to reach a server listening on addr: addr
// itself, or localhost at its port when addr listens on every interface (":9090", "0.0.0.0:9090").
func dialAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port or :port", addr)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port), nil
}
