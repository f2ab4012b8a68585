package grpcauth

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"lastmile/internal/platform/auth"
)

// ClientAddr returns the end client's address for the logs of a call by principal p: for a call a lastmile
// service forwarded (p.Via, from its verified certificate, such as the gateway), the last x-forwarded-for
// entry, which ClientKey keys the per-client limits on; otherwise the peer's address. Only a forwarding
// service's word is taken: x-forwarded-for from any other caller is never read. It returns "" when there is
// no usable address.
func ClientAddr(ctx context.Context, p auth.Principal) string {
	if p.Via != "" {
		if v := metadata.ValueFromIncomingContext(ctx, ForwardedForKey); len(v) > 0 {
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if addr, ok := logAddr(strings.TrimSpace(last)); ok {
				return addr
			}
		}
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		host := pr.Addr.String()
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if addr, ok := logAddr(host); ok {
			return addr
		}
	}
	return ""
}

// logAddr parses s as an IP address and formats it canonically (IPv4-mapped IPv6 as IPv4, no zone).
func logAddr(s string) (string, bool) {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return "", false
	}
	return addr.Unmap().WithZone("").String(), true
}
