package grpcapi

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/identity"
	"lastmile/internal/platform/auth"
)

// tokenType is how clients send access tokens.
const tokenType = "Bearer"

// AuthServer implements identityv1.AuthServiceServer over an identity.Service and its KeyManager.
type AuthServer struct {
	identityv1.UnimplementedAuthServiceServer
	svc  *identity.Service
	keys *identity.KeyManager
}

var _ identityv1.AuthServiceServer = (*AuthServer)(nil)

// NewAuthServer returns an AuthServer that logs users in with svc and publishes the keys of keys.
func NewAuthServer(svc *identity.Service, keys *identity.KeyManager) *AuthServer {
	return &AuthServer{svc: svc, keys: keys}
}

// Login implements identityv1.AuthServiceServer.
func (s *AuthServer) Login(ctx context.Context, req *identityv1.LoginRequest) (*identityv1.LoginResponse, error) {
	sess, err := s.svc.Login(ctx, identity.Credentials{
		Email:    req.GetEmail(),
		Username: req.GetUsername(),
		Password: req.GetPassword(),
	})
	if err != nil {
		return nil, err
	}
	return &identityv1.LoginResponse{
		AccessToken:           sess.AccessToken,
		RefreshToken:          sess.RefreshToken,
		ExpiresAt:             timestamppb.New(sess.AccessTokenExpiresAt),
		TokenType:             tokenType,
		RefreshTokenExpiresAt: timestamppb.New(sess.RefreshTokenExpiresAt),
		User:                  encodeUser(sess.User),
	}, nil
}

// RefreshToken implements identityv1.AuthServiceServer.
func (s *AuthServer) RefreshToken(ctx context.Context, req *identityv1.RefreshTokenRequest) (*identityv1.RefreshTokenResponse, error) {
	sess, err := s.svc.RefreshToken(ctx, req.GetRefreshToken())
	if err != nil {
		return nil, err
	}
	return &identityv1.RefreshTokenResponse{
		AccessToken:           sess.AccessToken,
		RefreshToken:          sess.RefreshToken,
		ExpiresAt:             timestamppb.New(sess.AccessTokenExpiresAt),
		TokenType:             tokenType,
		RefreshTokenExpiresAt: timestamppb.New(sess.RefreshTokenExpiresAt),
	}, nil
}

// Logout implements identityv1.AuthServiceServer.
func (s *AuthServer) Logout(ctx context.Context, req *identityv1.LogoutRequest) (*identityv1.LogoutResponse, error) {
	if err := s.svc.Logout(ctx, req.GetRefreshToken()); err != nil {
		return nil, err
	}
	return &identityv1.LogoutResponse{}, nil
}

// GetJwks implements identityv1.AuthServiceServer.
func (s *AuthServer) GetJwks(ctx context.Context, _ *identityv1.GetJwksRequest) (*identityv1.JsonWebKeySet, error) {
	keys, err := s.keys.PublicKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := &identityv1.JsonWebKeySet{Keys: make([]*identityv1.JsonWebKey, len(keys))}
	for i, k := range keys {
		out.Keys[i] = encodeJWK(k)
	}
	return out, nil
}

// ForwardedForKey is the metadata key in which the gateway passes the client address chain
// (grpc-gateway's default forwarding of X-Forwarded-For, with the address it saw appended).
const ForwardedForKey = "x-forwarded-for"

// ClientKey names the end user's network for the per-client login limit (identity.Options.ClientKey):
// "ip:" and an IPv4 address, or an IPv6 /64 prefix (one subscriber typically holds a whole /64, so
// single addresses would be free to rotate through).
//
// For a call forwarded by a lastmile service (the principal's Via, from its verified certificate, such
// as the gateway), the address is the LAST x-forwarded-for entry: the one the gateway itself saw. The
// entries before it come from the client and could be anything. Behind a load balancer that appends its
// own address, the gateway must be told to trust it; otherwise every client shares the balancer's key.
// Other calls use the peer address. It returns "" when there is no usable address, which skips the
// per-client limit.
func ClientKey(ctx context.Context) string {
	if auth.FromContext(ctx).Via != "" {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(ForwardedForKey); len(v) > 0 {
				last := v[len(v)-1]
				if i := strings.LastIndexByte(last, ','); i >= 0 {
					last = last[i+1:]
				}
				if key := ipKey(strings.TrimSpace(last)); key != "" {
					return key
				}
			}
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
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
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64) // cannot fail for an IPv6 address and 64
		return "ip:" + p.String()
	}
	return "ip:" + addr.String()
}
