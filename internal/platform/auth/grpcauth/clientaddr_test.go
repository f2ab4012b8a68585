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

func TestClientAddr(t *testing.T) {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("10.0.0.5"), Port: 4242}})
	forwarded := metadata.NewIncomingContext(ctx, metadata.Pairs(grpcauth.ForwardedForKey, "198.51.100.1, 2001:db8::7"))
	tests := []struct {
		name string
		ctx  context.Context
		p    auth.Principal
		want string
	}{
		{"forwarded by the gateway", forwarded, auth.Principal{Kind: auth.Anonymous, Via: "gateway"}, "2001:db8::7"},
		{"forwarded user call", forwarded, auth.Principal{Kind: auth.User, Subject: "u1", Via: "gateway"}, "2001:db8::7"},
		{"direct caller's claim ignored", forwarded, auth.Principal{Kind: auth.Anonymous}, "10.0.0.5"},
		{"forwarded without the header", ctx, auth.Principal{Kind: auth.Anonymous, Via: "gateway"}, "10.0.0.5"},
		{"no peer", context.Background(), auth.Principal{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := grpcauth.ClientAddr(tt.ctx, tt.p); got != tt.want {
				t.Errorf("ClientAddr() = %q, want %q", got, tt.want)
			}
		})
	}
}
