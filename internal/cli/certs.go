package cli

import (
	"errors"
	"fmt"
	"path/filepath"

	"lastmile/internal/platform/tlsutil"
)

func runCerts(args []string, env Env) (err error) {
	fs := newFlagSet("certs", `Create (or renew) the development CA and certificates in <data-dir>/tls: a serving certificate for
localhost plus --tls-hosts, and one client certificate per service identity (spiffe://lastmile/<service>).
Existing certificates that are still valid for more than 30 days are kept. serve does this at every start.
It takes the data directory's lock, so it refuses to run while serve uses the directory: stop serve, run
certs, start it again. (A running serve reloads certificate and key files that change, so another tool may
replace them in place; it reads the CA at start only.)`, env.Stdout)
	var dataDir string
	hosts := listFlag{}
	fs.StringVar(&dataDir, "data-dir", "./lastmile-data", "state directory")
	fs.Var(&hosts, "tls-hosts", "extra DNS names or IPs for the server certificate (comma list)")
	if err := fs.parse(args, env.Getenv); err != nil {
		return err
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
	fmt.Fprintf(env.Stdout, "\nCall the API with grpcurl: grpcurl -cacert %s localhost:9090 list\n", pki.CAFile())
	return nil
}
