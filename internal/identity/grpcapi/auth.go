package grpcapi

import (
	"context"
	"fmt"

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

// WatchSubjects implements identityv1.AuthServiceServer.
func (s *AuthServer) WatchSubjects(_ *identityv1.WatchSubjectsRequest, stream identityv1.AuthService_WatchSubjectsServer) error {
	return s.svc.WatchSubjects(stream.Context(), func(batch []identity.SubjectChange) error {
		msg := &identityv1.WatchSubjectsResponse{}
		for _, c := range batch {
			if c.Reset {
				// A reset drops everything before it, in this batch too.
				msg.Reset_, msg.Subjects = true, nil
				continue
			}
			msg.Subjects = append(msg.Subjects, EncodeSubject(c.UserID, c.State))
		}
		if err := stream.Send(msg); err != nil {
			return fmt.Errorf("send subject changes: %w", err)
		}
		return nil
	})
}

// GetSubject implements identityv1.AuthServiceServer.
func (s *AuthServer) GetSubject(ctx context.Context, req *identityv1.GetSubjectRequest) (*identityv1.Subject, error) {
	st, err := s.svc.SubjectState(ctx, req.GetUserId())
	if err != nil {
		return nil, err
	}
	return EncodeSubject(req.GetUserId(), st), nil
}

// EncodeSubject returns the contract's form of user id's standing st.
func EncodeSubject(id string, st auth.SubjectState) *identityv1.Subject {
	out := &identityv1.Subject{UserId: id, Active: st.Active}
	for _, r := range st.Roles {
		out.Roles = append(out.Roles, encodeRole(identity.Role(r)))
	}
	if !st.RevokedBefore.IsZero() {
		out.RevokedBefore = timestamppb.New(st.RevokedBefore)
	}
	return out
}

// DecodeSubject returns the standing a Subject describes, for a token verifier's cache
// (auth.Subjects). A role the contract does not define decodes to one no token carries, so it refuses
// every token of the user.
func DecodeSubject(m *identityv1.Subject) auth.SubjectState {
	st := auth.SubjectState{Active: m.GetActive()}
	for _, r := range m.GetRoles() {
		st.Roles = append(st.Roles, string(decodeRole(r)))
	}
	if m.GetRevokedBefore() != nil {
		st.RevokedBefore = m.GetRevokedBefore().AsTime()
	}
	return st
}
