package dispatch

import "context"

// hub fans the event feed out to this replica's courier sessions and task watchers (the session helper
// defines it).
type hub struct{}

// runHub stands in until the session helper lands.
func (s *Service) runHub(ctx context.Context) error { <-ctx.Done(); return nil }
