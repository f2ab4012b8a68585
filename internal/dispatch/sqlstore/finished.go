package sqlstore

import (
	"context"
	"slices"
	"strconv"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/database"
)

// finishedCond selects the tasks in a final state. It is written exactly as the predicate of the
// tasks_finished index (migration 00005), with literals rather than parameters, so that both engines
// can prove the query implies it and use the partial index.
const finishedCond = "state IN ('delivered', 'cancelled', 'failed')"

// FinishedTasks implements dispatch.Store. A limit above MaxLimit is lowered to it; a limit below 1 is
// Invalid. The read walks tasks_finished from the newest update back to since, so it costs the finished
// tasks of that window, not the table.
func (s *Store) FinishedTasks(ctx context.Context, f dispatch.TaskFilter, since time.Time, limit int) ([]dispatch.Task, error) {
	limit, err := database.RowLimit(limit, MaxLimit)
	if err != nil {
		return nil, err
	}
	if len(f.States) > 0 {
		f.States = slices.DeleteFunc(slices.Clone(f.States), func(st dispatch.State) bool { return !st.Final() })
		if len(f.States) == 0 {
			return nil, nil
		}
	}
	conds, args := filterSQL(f, nil)
	args = append(args, s.time(since), limit)
	conds = append(conds, finishedCond, "update_time >= $"+strconv.Itoa(len(args)-1))
	index := ""
	if s.e.Dialect == database.SQLite {
		// Without statistics SQLite's planner prefers tasks_state_list (every finished task ever, sorted)
		// or tasks_customer_list; PostgreSQL's picks tasks_finished for the ORDER BY ... LIMIT itself.
		index = " INDEXED BY tasks_finished"
	}
	return s.queryTasks(ctx, s.read, `SELECT `+taskColumns+` FROM tasks`+index+where(conds)+
		` ORDER BY update_time DESC, id DESC LIMIT $`+strconv.Itoa(len(args)), "list finished tasks", args...)
}
