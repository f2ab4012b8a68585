package sqlstore

import (
	"context"
	"database/sql"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/jobargs"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/jobs"
)

// RiverJobs returns the enqueuer of dispatch's jobs on River (for SetJobs): each dispatch.Job becomes
// its jobargs arguments, inserted in the store's transaction. client must run on the Store's database
// (jobs.New(store.DB(), store.Dialect(), ...), after jobs.Migrate); an insert-only client (no workers)
// is enough to enqueue. A job of a kind jobargs does not know is Internal.
func RiverJobs(client *jobs.Client) EnqueueJobs {
	return func(ctx context.Context, tx *sql.Tx, js []dispatch.Job) error {
		for _, j := range js {
			args, ok := jobargs.For(j)
			if !ok {
				return apperr.Errorf(apperr.Internal, "unknown job kind %q", j.Kind)
			}
			if _, err := client.EnqueueTx(ctx, tx, args, nil); err != nil {
				return err
			}
		}
		return nil
	}
}
