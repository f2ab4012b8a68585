package cli

import (
	"context"
	"log/slog"
	"time"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	identitygrpc "lastmile/internal/identity/grpcapi"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/grpcerr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/eventlog"
)

// remoteSubjectTimeout bounds one GetSubject call of a remote subject cache's loader beyond the call's
// own deadline.
const remoteSubjectTimeout = 5 * time.Second

// subjectWatchBackoff is the wait between reconnections of the subject watch.
var subjectWatchBackoff = eventlog.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}

// remoteSubjects returns the subject cache of a process that checks tokens without hosting identity: it
// reads a missing user's standing from identity (AuthService.GetSubject over client) and is kept current
// by watchSubjects, which the caller runs beside the servers.
func remoteSubjects(client identityv1.AuthServiceClient) *auth.Subjects {
	return auth.NewSubjects(func(ctx context.Context, id string) (auth.SubjectState, error) {
		ctx, cancel := context.WithTimeout(ctx, remoteSubjectTimeout)
		defer cancel()
		m, err := client.GetSubject(ctx, &identityv1.GetSubjectRequest{UserId: id})
		if err != nil {
			return auth.SubjectState{}, grpcerr.FromStatus("identity", err)
		}
		return identitygrpc.DecodeSubject(m), nil
	}, auth.SubjectsOptions{})
}

// subjectWatch keeps a remote subject cache current from identity's AuthService.WatchSubjects.
type subjectWatch struct {
	client   identityv1.AuthServiceClient
	subjects *auth.Subjects
	logger   *slog.Logger
}

// run keeps a WatchSubjects stream open until ctx ends, reconnecting after backoff, and returns nil.
// Each stream starts with a reset: the cache drops every state (DropAll), since changes may have been
// made while no stream was open, and, from the second stream on, reads the state of the users with open
// calls again (Recheck), ending those a missed change revoked. A reset later in a stream (identity lost
// events) ends every open call (ForgetAll). While no stream is open, the cache's TTL and MaxStale bound
// how stale a state may be.
func (w *subjectWatch) run(ctx context.Context) error {
	failures, streams := 0, 0
	for {
		received, err := w.follow(ctx, streams > 0)
		if ctx.Err() != nil {
			return nil
		}
		if received {
			streams++
			failures = 0
		}
		failures++
		if failures == 1 || failures%10 == 0 {
			w.logger.Warn("subject watch broke; reconnecting (revocations reach this process only through the cache's TTL meanwhile)",
				"error", err, "failures", failures)
		}
		t := time.NewTimer(subjectWatchBackoff.Delay(failures))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// follow reads one WatchSubjects stream until it breaks, and reports whether it received its first
// message (the stream was established). reconnect says an earlier stream was established.
func (w *subjectWatch) follow(ctx context.Context, reconnect bool) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := w.client.WatchSubjects(ctx, &identityv1.WatchSubjectsRequest{})
	if err != nil {
		return false, grpcerr.FromStatus("identity", err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			return received, grpcerr.FromStatus("identity", err)
		}
		switch {
		case !received:
			if !msg.GetReset_() {
				return false, apperr.Errorf(apperr.Internal, "subject watch did not start with a reset")
			}
			w.subjects.DropAll()
			if reconnect {
				w.subjects.Recheck(ctx)
			}
			received = true
		case msg.GetReset_():
			w.subjects.ForgetAll()
		}
		for _, s := range msg.GetSubjects() {
			w.subjects.Update(s.GetUserId(), identitygrpc.DecodeSubject(s))
		}
	}
}
