package sqlstore

import "testing"

// TestUpdateTaskSQL pins the parameter numbering of writeTask's statements: the changed columns
// follow the five always written, in the order of their bits, then the id, the version read and,
// guarded, the due time read.
func TestUpdateTaskSQL(t *testing.T) {
	const head = "UPDATE tasks SET state = $1, update_time = $2, due_time = $3, version = $4, doc = $5"
	for _, tc := range []struct {
		changed int
		guarded bool
		want    string
	}{
		{0, false, head + " WHERE id = $6 AND version = $7"},
		{0, true, head + " WHERE id = $6 AND version = $7 AND due_time IS $8"},
		{setOfferCourier, false, head + ", offer_courier_id = $6 WHERE id = $7 AND version = $8"},
		{setCourier | setOfferCourier, true, head + ", courier_id = $6, offer_courier_id = $7 WHERE id = $8 AND version = $9 AND due_time IS $10"},
		{setColumns - 1, false, head + ", customer_id = $6, courier_id = $7, offer_courier_id = $8, priority_rank = $9 WHERE id = $10 AND version = $11"},
	} {
		if got := updateTaskSQL[tc.changed][boolIndex(tc.guarded)]; got != tc.want {
			t.Errorf("updateTaskSQL[%b][guarded %v] =\n%s\nwant\n%s", tc.changed, tc.guarded, got, tc.want)
		}
	}
}
