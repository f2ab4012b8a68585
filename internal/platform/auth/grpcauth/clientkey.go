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

// ForwardedForKey is the metadata key in which the gateway passes the client address chain
// (grpc-gateway's default forwarding of X-Forwarded-For, with the address it saw appended).
const ForwardedForKey = "x-forwarded-for"

// ClientKey names the end user's network, for limits per client (identity's login limit, the server's
// rate limit for anonymous callers):
// "ip:" and an IPv4 address, or an IPv6 /64 prefix (one subscriber typically holds a whole /64, so
// single addresses would be free to rotate through).
//
// For a call forwarded by a lastmile service (the principal's Via, from its verified certificate, such
// as the gateway), the address is the LAST x-forwarded-for entry: the gateway sends exactly one, the
// client address it decided from the TCP peer and the X-Forwarded-For hops of its trusted proxies
// (gateway.Config.TrustedProxies, --trusted-proxies); any entry before it could only come from elsewhere
// and is ignored. Behind a load balancer the gateway must be told to trust it; otherwise every client
// shares the balancer's key. Other calls use the peer address: gRPC callers are not behind the gateway,
// and what they put in x-forwarded-for is never read. It returns "" when there is no usable address, which skips the
// per-client limit.
func ClientKey(ctx context.Context) string {
	if auth.FromContext(ctx).Via != "" {
		if v := metadata.ValueFromIncomingContext(ctx, ForwardedForKey); len(v) > 0 {
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if key := ipKey(strings.TrimSpace(last)); key != "" {
				return key
			}
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if tcp, ok := p.Addr.(*net.TCPAddr); ok { // the usual case, without formatting and parsing
			if addr, ok := netip.AddrFromSlice(tcp.IP); ok {
				return addrKey(addr)
			}
		}
		host := p.Addr.String()
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		return ipKey(host)
	}
	return ""
}

func ipKey(s string) string {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	return addrKey(addr)
}

func addrKey(addr netip.Addr) string {
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64) // cannot fail for an IPv6 address and 64
		return "ip:" + p.String()
	}
	return "ip:" + addr.String()
}
