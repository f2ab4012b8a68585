package auth_test

import (
	"context"
	"fmt"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

func ExampleSelfOrRoles() {
	// In a handler, the server has put the caller's principal into ctx.
	courier := auth.WithPrincipal(context.Background(),
		auth.Principal{Kind: auth.User, Subject: "courier-7", Roles: []string{auth.RoleCourier}})

	// "Only the courier the offer was made to, or a dispatcher."
	offerFor := func(courierID string) error {
		return auth.SelfOrRoles(courier, courierID, auth.RoleDispatcher, auth.RoleAdmin)
	}
	fmt.Println(offerFor("courier-7"))
	fmt.Println(apperr.CodeOf(offerFor("courier-8")))

	// Where existence is a secret: another user's account looks missing.
	err := auth.OwnerOrRolesNotFound(courier, "user-1", "user", auth.RoleAdmin)
	fmt.Println(apperr.CodeOf(err), apperr.MessageOf(err))
	// Output:
	// <nil>
	// permission_denied
	// not_found user not found
}
