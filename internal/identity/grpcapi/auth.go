package grpcapi

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/identity"
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
