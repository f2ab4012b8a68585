package dispatch

import "context"

// ProofsFor exposes proofsFor to the external tests of uploads.
func (s *Service) ProofsFor(ctx context.Context, t Task, courierID string, stage Stage, uploadIDs []string) ([]Proof, *CommandError) {
	return s.proofsFor(ctx, t, courierID, stage, uploadIDs)
}

// SweepUploads exposes sweepUploads to the external tests of uploads.
func (s *Service) SweepUploads(ctx context.Context) error { return s.sweepUploads(ctx) }
