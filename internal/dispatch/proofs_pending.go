package dispatch

import "context"

// proofsFor stands in until the uploads land: no upload is committed yet.
func (s *Service) proofsFor(_ context.Context, _ Task, _ string, _ Stage, ids []string) ([]Proof, *CommandError) {
	return nil, cmdErr("failed_precondition", ReasonUploadNotCommitted, "upload %s is not committed", ids[0])
}

// sweepUploads stands in until the uploads land.
func (s *Service) sweepUploads(context.Context) error { return nil }
