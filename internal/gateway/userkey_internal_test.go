package gateway

import (
	"net/http"
	"testing"
)

// Event streams without a user (a share link's) are limited per client address as the services key it:
// an IPv6 client by its /64, so that rotating through its addresses gives it no more streams; IPv4 clients
// and other /64s apart.
func TestUserKeyOfAnonymousCallers(t *testing.T) {
	key := func(remote string) string { return userKey(&http.Request{RemoteAddr: remote, Header: http.Header{}}) }
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"[2001:db8:1:2::1]:0", "[2001:db8:1:2:ffff::7]:0", true},
		{"[2001:db8:1:2::1]:0", "[2001:db8:1:3::1]:0", false},
		{"[::ffff:192.0.2.1]:0", "192.0.2.1:0", true},
		{"192.0.2.1:0", "192.0.2.2:0", false},
	} {
		if got := key(tc.a) == key(tc.b); got != tc.same {
			t.Errorf("userKey(%s) = %q, userKey(%s) = %q; same = %v, want %v", tc.a, key(tc.a), tc.b, key(tc.b), got, tc.same)
		}
	}
	if got, want := key("[2001:db8:1:2::1]:0"), "addr:2001:db8:1:2::/64"; got != want {
		t.Errorf("userKey of an IPv6 client = %q, want %q", got, want)
	}
}
