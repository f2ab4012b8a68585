package dispatch

import "time"

// Now returns the service's clock (Options.Now): the transport stamps the messages of a courier session
// with it (server_time), so that apps compare offer deadlines with the clock that set them.
func (s *Service) Now() time.Time { return s.now() }
