// Package grpcapi adapts the identity domain to the lastmile.identity.v1 gRPC contract: UserService and
// AuthService decode requests, call identity.Service (or identity.KeyManager for GetJwks) and encode the
// answers. The domain reads the caller from the context and enforces every object-level rule; errors come
// back as domain errors, unchanged, and the server's error interceptor maps them to gRPC status codes.
package grpcapi

import (
	"context"
	"errors"
	"io"
	"iter"

	"google.golang.org/grpc"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/identity"
)

// Register registers the UserService and AuthService of svc and keys on s.
func Register(s grpc.ServiceRegistrar, svc *identity.Service, keys *identity.KeyManager) {
	identityv1.RegisterUserServiceServer(s, NewUserServer(svc))
	identityv1.RegisterAuthServiceServer(s, NewAuthServer(svc, keys))
}

// UserServer implements identityv1.UserServiceServer over an identity.Service.
type UserServer struct {
	identityv1.UnimplementedUserServiceServer
	svc *identity.Service
}

var _ identityv1.UserServiceServer = (*UserServer)(nil)

// NewUserServer returns a UserServer answering with svc.
func NewUserServer(svc *identity.Service) *UserServer { return &UserServer{svc: svc} }

// CreateUser implements identityv1.UserServiceServer.
func (s *UserServer) CreateUser(ctx context.Context, req *identityv1.CreateUserRequest) (*identityv1.User, error) {
	u, err := s.svc.CreateUser(ctx, decodeNewUser(req))
	if err != nil {
		return nil, err
	}
	return encodeUser(u), nil
}

// GetUser implements identityv1.UserServiceServer.
func (s *UserServer) GetUser(ctx context.Context, req *identityv1.GetUserRequest) (*identityv1.User, error) {
	u, err := s.svc.GetUser(ctx, identity.Lookup{ID: req.GetId(), Email: req.GetEmail(), Username: req.GetUsername()})
	if err != nil {
		return nil, err
	}
	return encodeUser(u), nil
}

// UpdateUser implements identityv1.UserServiceServer.
func (s *UserServer) UpdateUser(ctx context.Context, req *identityv1.UpdateUserRequest) (*identityv1.User, error) {
	in := req.GetUser()
	u, err := s.svc.UpdateUser(ctx, identity.UserUpdate{
		ID:          in.GetId(),
		Paths:       req.GetUpdateMask().GetPaths(),
		DisplayName: in.GetDisplayName(),
		Username:    in.GetUsername(),
		Email:       in.GetEmail(),
		Role:        decodeRole(in.GetRole()),
		Status:      decodeStatus(in.GetStatus()),
		Version:     decodeEtag(in.GetEtag()),
	})
	if err != nil {
		return nil, err
	}
	return encodeUser(u), nil
}

// DeleteUser implements identityv1.UserServiceServer.
func (s *UserServer) DeleteUser(ctx context.Context, req *identityv1.DeleteUserRequest) (*identityv1.User, error) {
	u, err := s.svc.DeleteUser(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return encodeUser(u), nil
}

// ListUsers implements identityv1.UserServiceServer.
func (s *UserServer) ListUsers(ctx context.Context, req *identityv1.ListUsersRequest) (*identityv1.ListUsersResponse, error) {
	page, err := s.svc.ListUsers(ctx, identity.ListRequest{
		Filter:    identity.Filter{Status: decodeStatus(req.GetStatus()), Role: decodeRole(req.GetRole()), Search: req.GetSearch()},
		PageSize:  int(req.GetPageSize()),
		PageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, err
	}
	out := &identityv1.ListUsersResponse{
		Users:         make([]*identityv1.User, len(page.Users)),
		NextPageToken: page.NextPageToken,
		// Clamped rather than wrapped: two billion users is not a problem this service will meet.
		TotalSize: int32(min(page.TotalSize, 1<<31-1)),
	}
	for i, u := range page.Users {
		out.Users[i] = encodeUser(u)
	}
	return out, nil
}

// ChangePassword implements identityv1.UserServiceServer.
func (s *UserServer) ChangePassword(ctx context.Context, req *identityv1.ChangePasswordRequest) (*identityv1.ChangePasswordResponse, error) {
	if err := s.svc.ChangePassword(ctx, req.GetId(), req.GetCurrentPassword(), req.GetNewPassword()); err != nil {
		return nil, err
	}
	return &identityv1.ChangePasswordResponse{}, nil
}

// StreamUsers implements identityv1.UserServiceServer.
func (s *UserServer) StreamUsers(req *identityv1.StreamUsersRequest, stream identityv1.UserService_StreamUsersServer) error {
	f := identity.Filter{Status: decodeStatus(req.GetStatus()), Role: decodeRole(req.GetRole()), Search: req.GetSearch()}
	return s.svc.StreamUsers(stream.Context(), f, func(u identity.User) error {
		return stream.Send(&identityv1.StreamUsersResponse{User: encodeUser(u)})
	})
}

// BulkCreateUsers implements identityv1.UserServiceServer.
func (s *UserServer) BulkCreateUsers(stream identityv1.UserService_BulkCreateUsersServer) error {
	results, err := s.svc.BulkCreateUsers(stream.Context(), bulkItems(stream))
	if err != nil {
		return err
	}
	return stream.SendAndClose(encodeBulkResults(results))
}

// bulkItems yields the decoded items of a BulkCreateUsers stream until the client closes its side.
func bulkItems(stream identityv1.UserService_BulkCreateUsersServer) iter.Seq2[identity.BulkItem, error] {
	return func(yield func(identity.BulkItem, error) bool) {
		for {
			req, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(identity.BulkItem{}, err)
				return
			}
			if !yield(decodeBulkItem(req), nil) {
				return
			}
		}
	}
}
