package sqlite_test

import (
	"testing"

	"go.uber.org/goleak"

	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/dispatch/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *sqlstore.Store { return storetest.SQLiteStore(t) })
}
