package dirlock_test

import (
	"errors"
	"fmt"
	"os"

	"lastmile/internal/platform/dirlock"
)

func Example() {
	dir, err := os.MkdirTemp("", "lastmile-data-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	lock, err := dirlock.Acquire(dir, "lastmile serve")
	if err != nil {
		fmt.Println(err)
		return
	}
	// Held until Release or exit; a second Acquire, here or in another process, is refused.
	_, err = dirlock.Acquire(dir, "lastmile migrate")
	var held *dirlock.HeldError
	fmt.Println(errors.As(err, &held), held.PID == os.Getpid(), held.Holder)

	if err := lock.Release(); err != nil {
		fmt.Println(err)
	}
	again, err := dirlock.Acquire(dir, "lastmile migrate")
	fmt.Println("after release:", err)
	again.Release()
	// Output:
	// true true lastmile serve
	// after release: <nil>
}
