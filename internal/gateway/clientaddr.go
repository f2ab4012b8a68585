package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// forwardedFor is the header that carries the client address chain through proxies.
const forwardedFor = "X-Forwarded-For"

// setClientAddr makes r's RemoteAddr the client's address and removes X-Forwarded-For, so that
// grpc-gateway forwards exactly that one address as the x-forwarded-for metadata, which the services key
// their per-client limits on (grpcauth.ClientKey). The address is the TCP peer's, unless the peer is a
// trusted proxy: then X-Forwarded-For is read from the right, past every trusted hop, and the first
// address that is not a trusted proxy is the client. Entries left of it were written by the client and
// prove nothing; an entry that is not an address ends the walk at the last trusted hop. Nothing a client
// sends therefore passes through unchecked, and a malformed header (non-ASCII, say) can no longer make
// the gateway drop the address and fall back to its own.
func setClientAddr(r *http.Request, trusted []netip.Prefix) {
	client, ok := clientAddr(r.RemoteAddr, r.Header.Values(forwardedFor), trusted)
	r.Header.Del(forwardedFor)
	if ok {
		r.RemoteAddr = net.JoinHostPort(client.String(), "0")
	}
}

// clientAddr returns the client's address for a request from remote (host:port) that carried the
// X-Forwarded-For values xff. ok is false when remote holds no address.
func clientAddr(remote string, xff []string, trusted []netip.Prefix) (addr netip.Addr, ok bool) {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	addr = addr.Unmap().WithZone("")
	if !isTrusted(addr, trusted) || len(xff) == 0 {
		return addr, true
	}
	// Several header lines are one list, in order (RFC 9110, section 5.3).
	hops := strings.Split(strings.Join(xff, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr, true
		}
		addr = hop.Unmap().WithZone("")
		if !isTrusted(addr, trusted) {
			return addr, true
		}
	}
	return addr, true
}

func isTrusted(addr netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
