package sqlstore

import (
	"context"
	"database/sql"

	"github.com/riverqueue/river"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/jobargs"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/jobs"
)

// RiverJobs returns the enqueuer of dispatch's jobs on River (for SetJobs): a change's dispatch.Jobs
// become their jobargs arguments, inserted in the store's transaction in one statement
// (jobs.Client.EnqueueManyTx: dispatch's jobs have no uniqueness options; they are idempotent by task).
// client must run on the Store's database (jobs.New(store.DB(), store.Dialect(), ...), after
// jobs.Migrate); an insert-only client (no workers) is enough to enqueue. A job of a kind jobargs does
// not know is Internal.
func RiverJobs(client *jobs.Client) EnqueueJobs {
	return func(ctx context.Context, tx *sql.Tx, js []dispatch.Job) error {
		all := make([]river.JobArgs, 0, len(js))
		for _, j := range js {
			args, ok := jobargs.For(j)
			if !ok {
				return apperr.Errorf(apperr.Internal, "unknown job kind %q", j.Kind)
			}
			all = append(all, args)
		}
		_, err := client.EnqueueManyTx(ctx, tx, all)
		return err
	}
}
