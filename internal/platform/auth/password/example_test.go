package password_test

import (
	"context"
	"fmt"

	"lastmile/internal/platform/auth/password"
)

func ExampleHasher() {
	ctx := context.Background()
	h, err := password.New(password.Config{}) // OWASP parameters, one hash per CPU at a time
	if err != nil {
		fmt.Println(err)
		return
	}
	encoded, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(encoded[:31])

	ok, needsRehash, err := h.Verify(ctx, "correct horse battery staple", encoded)
	fmt.Println(ok, needsRehash, err)
	ok, _, err = h.Verify(ctx, "Tr0ub4dor&3", encoded)
	fmt.Println(ok, err)

	// No such user: spend the same time anyway.
	fmt.Println(h.DummyVerify(ctx, "Tr0ub4dor&3"))
	// Output:
	// $argon2id$v=19$m=19456,t=2,p=1$
	// true false <nil>
	// false <nil>
	// <nil>
}
