package sqlite_test

import (
	"testing"
	"time"

	"lastmile/internal/dispatch/storetest"
)

// On SQLite the leases' writes share the writer's group transactions (database.Group) with the store's
// other writes instead of each holding the one writer connection for a transaction of its own: the
// group counts one function for each, and the tasks are leased and unleased as before.
func TestLeasesRunInTheWriterGroup(t *testing.T) {
	ctx := t.Context()
	s := storetest.SQLiteStore(t)
	task := createPending(t, s, "0190c000-0000-7000-8000-0000000000a1", updateBase)
	other := createPending(t, s, "0190c000-0000-7000-8000-0000000000a2", updateBase)
	steps := []struct {
		name string
		run  func() error
	}{
		{"LeaseDue", func() error {
			got, err := s.LeaseDue(ctx, "replica-1", updateBase, time.Minute, 10)
			if err == nil && (len(got) != 2 || got[0].ID != task.ID || got[1].ID != other.ID) {
				t.Errorf("LeaseDue leased %d tasks (%v), want %s and %s", len(got), got, task.ID, other.ID)
			}
			return err
		}},
		{"UnleaseTasks", func() error { return s.UnleaseTasks(ctx, []string{task.ID}, "replica-1") }},
		{"Unlease", func() error { return s.Unlease(ctx, other.ID, "replica-1") }},
		{"LeaseDue again", func() error {
			got, err := s.LeaseDue(ctx, "replica-2", updateBase, time.Minute, 10)
			if err == nil && len(got) != 2 {
				t.Errorf("LeaseDue after the unleases leased %d tasks, want 2", len(got))
			}
			return err
		}},
	}
	for _, step := range steps {
		before := s.WriterStats().Functions
		if err := step.run(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := s.WriterStats().Functions - before; got != 1 {
			t.Errorf("%s ran %d functions in the writer group, want 1", step.name, got)
		}
	}
}
