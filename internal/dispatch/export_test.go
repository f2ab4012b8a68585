package dispatch

import "context"

// RunHub runs the hub for tests of package dispatch_test (Run starts it in production).
func (s *Service) RunHub(ctx context.Context) error { return s.runHub(ctx) }

// RouteSessionEvent routes a TopicSession event naming sessionID as courierID's current session, as the
// hub does when it reads one (possibly late).
func (s *Service) RouteSessionEvent(courierID, sessionID string) {
	s.hub.replaceOthers(courierID, sessionID)
}
