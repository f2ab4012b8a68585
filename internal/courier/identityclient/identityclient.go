// Package identityclient adapts the identity service's gRPC client to the courier domain's Users
// interface: the courier service looks up the user a courier record links to.
package identityclient

import (
	"context"
	"strings"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr/grpcerr"
	"lastmile/internal/platform/auth"
)

// Client implements courier.Users over identity's UserService.
type Client struct {
	users identityv1.UserServiceClient
}

var _ courier.Users = (*Client)(nil)

// New returns a Client calling users. The connection must present the courier service's certificate:
// identity admits GetUser from that service identity.
func New(users identityv1.UserServiceClient) *Client { return &Client{users: users} }

// GetUser implements courier.Users. Identity's status codes are translated into domain errors at this
// boundary (NotFound stays NotFound; identity being down is Unavailable).
func (c *Client) GetUser(ctx context.Context, id string) (courier.UserInfo, error) {
	u, err := c.users.GetUser(ctx, &identityv1.GetUserRequest{Lookup: &identityv1.GetUserRequest_Id{Id: id}})
	if err != nil {
		return courier.UserInfo{}, grpcerr.FromStatus("identity", err)
	}
	return courier.UserInfo{
		ID:          u.GetId(),
		Role:        roleName(u.GetRole()),
		Status:      statusName(u.GetStatus()),
		DisplayName: u.GetDisplayName(),
	}, nil
}

func roleName(r identityv1.Role) string {
	switch r {
	case identityv1.Role_ROLE_CUSTOMER:
		return auth.RoleCustomer
	case identityv1.Role_ROLE_COURIER:
		return auth.RoleCourier
	case identityv1.Role_ROLE_DISPATCHER:
		return auth.RoleDispatcher
	case identityv1.Role_ROLE_ADMIN:
		return auth.RoleAdmin
	}
	return ""
}

func statusName(s identityv1.UserStatus) string {
	// USER_STATUS_ACTIVE -> "active", matching courier.UserActive.
	return strings.ToLower(strings.TrimPrefix(s.String(), "USER_STATUS_"))
}
