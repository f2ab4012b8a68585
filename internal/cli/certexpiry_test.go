package cli

import (
	"fmt"
	"io"
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
	metrics := getBody(t, "http://"+s.Admin+"/metrics")
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
	if body := getBody(t, "http://"+plain.Admin+"/metrics"); strings.Contains(body, "lastmile_tls_certificate_expiry") {
		t.Errorf("/metrics with --insecure has certificate expiry series")
	}
}

// promFloat formats a time in seconds as the text exposition writes a float (strconv's shortest 'g').
func promFloat(at time.Time) string {
	return strconv.FormatFloat(float64(at.Unix()), 'g', -1, 64)
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return string(body)
}
