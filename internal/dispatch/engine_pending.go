package dispatch

import "context"

// Decide stands in until the engine lands (deleted at its merge).
func (e *Engine) Decide(_ context.Context, t Task, trigger Trigger, env DecideEnv) (Decision, error) {
	return Decision{ID: newID(), TaskID: t.ID, DecideTime: env.Now, Trigger: trigger, Outcome: OutcomeNoCandidates}, nil
}
