package grpcapi

import (
	"encoding/base64"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/grpcerr"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/protoenum"
)

func encodeUser(u identity.User) *identityv1.User {
	return &identityv1.User{
		Id:            u.ID,
		Email:         u.Email,
		DisplayName:   u.DisplayName,
		Role:          encodeRole(u.Role),
		Status:        encodeStatus(u.Status),
		Username:      u.Username,
		CreateTime:    timestamp(u.CreatedAt),
		UpdateTime:    timestamp(u.UpdatedAt),
		DeleteTime:    timestamp(u.DeletedAt),
		LastLoginTime: timestamp(u.LastLoginAt),
		Etag:          encodeEtag(u.Version),
	}
}

// timestamp returns nil for the zero time, which the domain uses for "unset".
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func encodeEtag(version int64) string { return strconv.FormatInt(version, 10) }

// decodeEtag returns the version an etag names: 0 for no etag (update unconditionally), and -1, which
// matches no version, for an etag this server never issued, so that the update is Aborted as for any
// other stale etag.
func decodeEtag(etag string) int64 {
	if etag == "" {
		return 0
	}
	v, err := strconv.ParseInt(etag, 10, 64)
	if err != nil || v <= 0 {
		return -1
	}
	return v
}

var roles = protoenum.New(map[identity.Role]identityv1.Role{
	identity.RoleCustomer:   identityv1.Role_ROLE_CUSTOMER,
	identity.RoleCourier:    identityv1.Role_ROLE_COURIER,
	identity.RoleDispatcher: identityv1.Role_ROLE_DISPATCHER,
	identity.RoleAdmin:      identityv1.Role_ROLE_ADMIN,
})

func encodeRole(r identity.Role) identityv1.Role {
	return roles.Encode(r)
}

// decodeRole maps ROLE_UNSPECIFIED to "" and a number the contract does not define to a role the domain
// refuses as invalid (the validation interceptor normally refuses it first).
func decodeRole(r identityv1.Role) identity.Role {
	return roles.Decode(r)
}

var statuses = protoenum.New(map[identity.Status]identityv1.UserStatus{
	identity.StatusActive:    identityv1.UserStatus_USER_STATUS_ACTIVE,
	identity.StatusSuspended: identityv1.UserStatus_USER_STATUS_SUSPENDED,
	identity.StatusDeleted:   identityv1.UserStatus_USER_STATUS_DELETED,
})

func encodeStatus(s identity.Status) identityv1.UserStatus {
	return statuses.Encode(s)
}

// decodeStatus maps USER_STATUS_UNSPECIFIED to "" and undefined numbers to a status the domain refuses.
func decodeStatus(s identityv1.UserStatus) identity.Status {
	return statuses.Decode(s)
}

var activityTypes = map[identity.ActivityType]identityv1.UserActivityType{
	identity.ActivityLogin:           identityv1.UserActivityType_USER_ACTIVITY_TYPE_LOGIN,
	identity.ActivityLogout:          identityv1.UserActivityType_USER_ACTIVITY_TYPE_LOGOUT,
	identity.ActivityProfileChanged:  identityv1.UserActivityType_USER_ACTIVITY_TYPE_PROFILE_CHANGED,
	identity.ActivityPasswordChanged: identityv1.UserActivityType_USER_ACTIVITY_TYPE_PASSWORD_CHANGED,
	identity.ActivityRoleChanged:     identityv1.UserActivityType_USER_ACTIVITY_TYPE_ROLE_CHANGED,
	identity.ActivityStatusChanged:   identityv1.UserActivityType_USER_ACTIVITY_TYPE_STATUS_CHANGED,
	identity.ActivityDeleted:         identityv1.UserActivityType_USER_ACTIVITY_TYPE_DELETED,
}

func encodeEvent(ev identity.ActivityEvent) *identityv1.UserActivityResponse {
	out := &identityv1.UserActivityEvent{
		Id:            ev.ID,
		UserId:        ev.UserID,
		Type:          activityTypes[ev.Type],
		EventTime:     timestamp(ev.At),
		ActorUserId:   ev.ActorUserID,
		ChangedFields: ev.ChangedFields,
	}
	if ev.User.ID != "" {
		out.User = encodeUser(ev.User)
	}
	return &identityv1.UserActivityResponse{Payload: &identityv1.UserActivityResponse_Event{Event: out}}
}

func encodeSubscriptions(ids []string) *identityv1.UserActivityResponse {
	return &identityv1.UserActivityResponse{Payload: &identityv1.UserActivityResponse_Subscriptions{
		Subscriptions: &identityv1.UserActivitySubscriptions{UserIds: ids},
	}}
}

func decodeNewUser(req *identityv1.CreateUserRequest) identity.NewUser {
	return identity.NewUser{
		Email:       req.GetEmail(),
		Password:    req.GetPassword(),
		DisplayName: req.GetDisplayName(),
		Username:    req.GetUsername(),
		Role:        decodeRole(req.GetRole()),
	}
}

// decodeBulkItem checks one BulkCreateUsers item against the CreateUserRequest rules, which the
// validation interceptor skips for items so that a bad one does not end the stream.
func decodeBulkItem(req *identityv1.BulkCreateUsersRequest) identity.BulkItem {
	if req.GetRequest() == nil {
		return identity.BulkItem{Err: apperr.InvalidFields("invalid item",
			apperr.FieldViolation{Field: "request", Description: "is required"})}
	}
	return identity.BulkItem{User: decodeNewUser(req.GetRequest()), Err: grpcserver.Validate(req.GetRequest())}
}

func encodeBulkResults(results []identity.BulkResult) *identityv1.BulkCreateUsersResponse {
	out := &identityv1.BulkCreateUsersResponse{Results: make([]*identityv1.BulkCreateUsersResult, len(results))}
	for i, r := range results {
		res := &identityv1.BulkCreateUsersResult{
			// At most identity.MaxBulkItems items, far inside int32.
			Index:  int32(r.Index),
			UserId: r.UserID,
		}
		if r.Err == nil {
			out.CreatedCount++
		} else {
			out.FailedCount++
			res.Code = int32(grpcerr.GRPCCode(apperr.CodeOf(r.Err)))
			res.Message = apperr.MessageOf(r.Err)
			if e := apperr.As(r.Err); e != nil && e.Code == apperr.Invalid {
				for _, v := range e.Violations {
					res.FieldViolations = append(res.FieldViolations,
						&identityv1.FieldViolation{Field: v.Field, Description: v.Description})
				}
			}
		}
		out.Results[i] = res
	}
	return out
}

func encodeJWK(k identity.SigningKey) *identityv1.JsonWebKey {
	return &identityv1.JsonWebKey{
		Kty: "OKP",
		Crv: "Ed25519",
		X:   base64.RawURLEncoding.EncodeToString(k.PublicKey),
		Kid: k.KID,
		Alg: "EdDSA",
		Use: "sig",
	}
}
