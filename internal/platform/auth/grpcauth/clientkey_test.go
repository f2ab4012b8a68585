package grpcauth_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
)

func TestClientKey(t *testing.T) {
	withPeer := func(ip string) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 4242}})
	}
	viaGateway := func(ctx context.Context, xff ...string) context.Context {
		ctx = auth.WithPrincipal(ctx, auth.Principal{Kind: auth.Anonymous, Via: "gateway"})
		md := metadata.MD{}
		for _, v := range xff {
			md.Append(grpcauth.ForwardedForKey, v)
		}
		return metadata.NewIncomingContext(ctx, md)
	}
	tests := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"direct IPv4 peer", withPeer("192.0.2.10"), "ip:192.0.2.10"},
		{"direct IPv4-mapped peer", withPeer("::ffff:192.0.2.10"), "ip:192.0.2.10"},
		{"direct IPv6 peer keyed by /64", withPeer("2001:db8:1:2:3:4:5:6"), "ip:2001:db8:1:2::/64"},
		{"no peer", context.Background(), ""},
		{"gateway: last forwarded entry", viaGateway(withPeer("10.0.0.5"), "198.51.100.1, 203.0.113.9"), "ip:203.0.113.9"},
		{"gateway: last of several entries", viaGateway(withPeer("10.0.0.5"), "198.51.100.1", "203.0.113.9"), "ip:203.0.113.9"},
		{"gateway without forwarded-for uses the peer", viaGateway(withPeer("10.0.0.5")), "ip:10.0.0.5"},
		{"gateway with garbage uses the peer", viaGateway(withPeer("10.0.0.5"), "not-an-ip"), "ip:10.0.0.5"},
		{"forwarded-for from a direct client is ignored",
			metadata.NewIncomingContext(withPeer("192.0.2.10"), metadata.Pairs(grpcauth.ForwardedForKey, "203.0.113.9")), "ip:192.0.2.10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := grpcauth.ClientKey(tt.ctx); got != tt.want {
				t.Errorf("ClientKey() = %q, want %q", got, tt.want)
			}
		})
	}
}
