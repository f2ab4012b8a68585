package gateway

import (
	"net/url"
	"unicode/utf8"
)

// validUTF8 reports whether u's path and query parameters are valid UTF-8 once percent-decoded.
// grpc-gateway copies them into protobuf string fields, which must be UTF-8: without this check the gRPC
// client fails to marshal such a request and reports Internal, so that GET /v1/users/%ff was answered
// 500 — a server error, counted by the circuit breaker, for what is the client's mistake.
func validUTF8(u *url.URL) bool {
	if !utf8.ValidString(u.Path) {
		return false
	}
	// Pairs with malformed escapes are dropped here as grpc-gateway drops them; the rest must be UTF-8.
	q, _ := url.ParseQuery(u.RawQuery)
	for k, vs := range q {
		if !utf8.ValidString(k) {
			return false
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}
