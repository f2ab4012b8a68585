package tlsutil_test

import (
	"fmt"
	"os"
	"path/filepath"

	"lastmile/internal/platform/tlsutil"
)

func ExampleEnsureDevPKI() {
	dataDir, err := os.MkdirTemp("", "lastmile-data")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dataDir)

	// What the binary does on start: create the CA and certificates once, reuse them afterwards.
	pki, err := tlsutil.EnsureDevPKI(filepath.Join(dataDir, "tls"), []string{"lastmile.internal"}, "dispatch", "gateway")
	if err != nil {
		fmt.Println(err)
		return
	}
	serverCert, serverKey := pki.ServerCert()
	if _, err := tlsutil.ServerConfig(serverCert, serverKey, pki.CAFile()); err != nil {
		fmt.Println(err)
		return
	}
	clientCert, clientKey := pki.ClientCert("dispatch")
	if _, err := tlsutil.ClientConfig(clientCert, clientKey, pki.CAFile()); err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println(filepath.Base(pki.CAFile()))
	fmt.Println(filepath.Base(serverCert), filepath.Base(serverKey))
	fmt.Println(filepath.Base(clientCert), filepath.Base(clientKey))
	// Output:
	// ca.crt
	// server.crt server.key
	// dispatch.crt dispatch.key
}
