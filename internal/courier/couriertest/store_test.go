package couriertest_test

import (
	"testing"

	"lastmile/internal/courier"
	"lastmile/internal/courier/couriertest"
	"lastmile/internal/courier/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(*testing.T) courier.Store { return couriertest.NewStore() })
}
