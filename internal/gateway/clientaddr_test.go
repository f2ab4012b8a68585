package gateway_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/gateway"
)

// TestForwardedClientAddress: the services get exactly one x-forwarded-for entry, the client address the
// gateway decided: the TCP peer (here 127.0.0.1) unless the peer is a trusted proxy, and then the first
// untrusted address from the right of X-Forwarded-For. Spoofed and malformed headers change nothing.
func TestForwardedClientAddress(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	tests := []struct {
		name    string
		trusted []netip.Prefix
		xff     []string
		want    string
	}{
		{"no header", nil, nil, "127.0.0.1"},
		{"spoofed, untrusted peer", nil, []string{"203.0.113.9"}, "127.0.0.1"},
		{"non-ASCII, untrusted peer", nil, []string{"\u00fc\u00df, 203.0.113.9"}, "127.0.0.1"},
		{"garbage, untrusted peer", nil, []string{"not an address"}, "127.0.0.1"},
		{"trusted peer, no header", loopback, nil, "127.0.0.1"},
		{"trusted peer", loopback, []string{"198.51.100.1, 203.0.113.9"}, "203.0.113.9"},
		{"trusted peer, several lines", loopback, []string{"198.51.100.1", "203.0.113.9"}, "203.0.113.9"},
		{"two trusted hops", append([]netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, loopback...),
			[]string{"198.51.100.1, 203.0.113.9"}, "198.51.100.1"},
		{"trusted peer, non-ASCII hop left of the proxy's", loopback, []string{"\u00fc\u00df, 203.0.113.9"}, "203.0.113.9"},
		{"trusted peer, non-ASCII last hop", loopback, []string{"\u00fc\u00df"}, "127.0.0.1"},
		{"trusted peer, IPv4-mapped IPv6", loopback, []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"trusted peer, IPv6", loopback, []string{"2001:db8::1"}, "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeRoute{}
			srv := startGateway(t, fake, gateway.Config{TrustedProxies: tt.trusted})
			resp, body := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), http.Header{"X-Forwarded-For": tt.xff})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST %s = %d %s, want 200", estimatePath, resp.StatusCode, body)
			}
			md, calls := fake.lastMetadata()
			if calls != 1 {
				t.Fatalf("service calls = %d, want 1", calls)
			}
			if got, want := md.Get("x-forwarded-for"), []string{tt.want}; !cmp.Equal(got, want) {
				t.Errorf("x-forwarded-for metadata for X-Forwarded-For %q = %q, want %q", tt.xff, got, want)
			}
		})
	}
}
