package cli

import (
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestServeExportsCertificateExpiry checks that /metrics says when each certificate the process presents
// expires, as read from its files, so that an operator can alert before internal mTLS breaks; and that
// --insecure exports none.
func TestServeExportsCertificateExpiry(t *testing.T) {
	dir := t.TempDir()
	s := startServe(t, nil, "--data-dir", dir, "--insecure=false")
	status, metrics := get(t, "http://"+s.Admin+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics = %d", status)
	}
	names := map[string]string{"server": "server.crt", "ca": "ca.crt"}
	for _, id := range identities() {
		names[id] = id + ".crt"
	}
	for label, file := range names {
		cert, err := readCertFile(filepath.Join(dir, "tls", file))
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("lastmile_tls_certificate_expiry_timestamp_seconds{certificate=%q} %s\n", label, promFloat(cert.NotAfter))
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if got := len(regexp.MustCompile(`(?m)^lastmile_tls_certificate_expiry_timestamp_seconds\{`).FindAllString(metrics, -1)); got != len(names) {
		t.Errorf("/metrics has %d certificate expiry series, want %d", got, len(names))
	}

	plain := startServe(t, nil, "--data-dir", t.TempDir())
	if status, body := get(t, "http://"+plain.Admin+"/metrics"); status != http.StatusOK || strings.Contains(body, "lastmile_tls_certificate_expiry") {
		t.Errorf("GET /metrics with --insecure = %d, with certificate expiry series %t", status, strings.Contains(body, "lastmile_tls_certificate_expiry"))
	}
}

// promFloat formats a time in seconds as the text exposition writes a float (strconv's shortest 'g').
func promFloat(at time.Time) string {
	return strconv.FormatFloat(float64(at.Unix()), 'g', -1, 64)
}
