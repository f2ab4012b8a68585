package grpcapi

import (
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/platform/auth"
)

// Policy says who may call each UserService and AuthService method. It is the first gate only: the
// identity domain checks every call again against the object it touches (a customer reading another
// user gets NotFound, a non-admin setting a role PermissionDenied).
//
//   - CreateUser is public, for sign-up; the domain refuses a role from anyone but an admin.
//   - Login, RefreshToken and Logout are public: the credentials travel in the request. GetJwks is
//     public: the keys are, and verifiers fetch them before they can verify anything.
//   - GetUser, UpdateUser, DeleteUser and ChangePassword admit every user; the domain lets users act on
//     themselves and admins (dispatchers: read) on others. GetUser also admits the courier service, which
//     checks that a user it registers as a courier exists and has the courier role.
//   - ListUsers admits admins and dispatchers, who look up couriers to register them.
//   - StreamUsers (export) and BulkCreateUsers (import) are for admins.
//   - UserActivity admits every user; the domain lets users watch themselves and admins anyone.
//   - WatchSubjects and GetSubject, which keep the subject cache of a process that checks tokens without
//     hosting identity, admit the services that host such a verifier: courier, route and dispatch.
func Policy() auth.Policy {
	anyUser := auth.Users()
	admins := auth.Users(auth.RoleAdmin)
	verifiers := auth.Internal("courier", "route", "dispatch")
	return auth.Policy{
		identityv1.UserService_CreateUser_FullMethodName:      auth.Public(),
		identityv1.UserService_GetUser_FullMethodName:         anyUser.Or(auth.Internal("courier")),
		identityv1.UserService_UpdateUser_FullMethodName:      anyUser,
		identityv1.UserService_DeleteUser_FullMethodName:      anyUser,
		identityv1.UserService_ChangePassword_FullMethodName:  anyUser,
		identityv1.UserService_ListUsers_FullMethodName:       auth.Users(auth.RoleAdmin, auth.RoleDispatcher),
		identityv1.UserService_StreamUsers_FullMethodName:     admins,
		identityv1.UserService_BulkCreateUsers_FullMethodName: admins,
		identityv1.UserService_UserActivity_FullMethodName:    anyUser,

		identityv1.AuthService_Login_FullMethodName:         auth.Public(),
		identityv1.AuthService_RefreshToken_FullMethodName:  auth.Public(),
		identityv1.AuthService_Logout_FullMethodName:        auth.Public(),
		identityv1.AuthService_GetJwks_FullMethodName:       auth.Public(),
		identityv1.AuthService_WatchSubjects_FullMethodName: verifiers,
		identityv1.AuthService_GetSubject_FullMethodName:    verifiers,
	}
}
