package dispatch

import "context"

// RunHub runs the hub for tests of package dispatch_test (Run starts it in production).
func (s *Service) RunHub(ctx context.Context) error { return s.runHub(ctx) }
