package grpcserver

import (
	"net"
	"testing"
)

// peerString must print exactly what the address's String method prints: the log line's peer field.
func TestPeerString(t *testing.T) {
	for _, a := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53422},
		&net.TCPAddr{IP: net.ParseIP("10.1.2.3").To4(), Port: 1},
		&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443},
		&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 80, Zone: "eth0"},
		&net.TCPAddr{IP: nil, Port: 8080},
		&net.UnixAddr{Name: "/tmp/s", Net: "unix"},
	} {
		if got, want := peerString(a), a.String(); got != want {
			t.Errorf("peerString(%#v) = %q, want %q", a, got, want)
		}
	}
}
