package sqlite_test

import (
	"testing"

	"go.uber.org/goleak"

	"lastmile/internal/identity"
	"lastmile/internal/identity/identitytest"
	"lastmile/internal/identity/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) identity.Store { return identitytest.SQLiteStore(t) })
}
