package grpcapi

import (
	"errors"
	"io"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/identity"
)

// UserActivity implements identityv1.UserServiceServer.
//
// One goroutine reads client messages; this one does all sending (gRPC streams allow one sender), so a
// subscription change is applied and confirmed between two events, and identity.Watch.Next drops events
// queued for users unsubscribed meanwhile: nothing follows the confirmation of an unsubscribe.
func (s *UserServer) UserActivity(stream identityv1.UserService_UserActivityServer) error {
	ctx := stream.Context()
	w, err := s.svc.WatchActivity(ctx)
	if err != nil {
		return err
	}
	defer w.Close()
	reqs, recvErr := receive(stream)
	for {
		select {
		case req := <-reqs:
			ids, err := w.Update(req.GetSubscribeUserIds(), req.GetUnsubscribeUserIds())
			if err != nil {
				return err
			}
			if err := stream.Send(encodeSubscriptions(ids)); err != nil {
				return err
			}
		case err := <-recvErr:
			if !errors.Is(err, io.EOF) {
				return err
			}
			// The client closed its side: it changes nothing any more, but still receives events.
			recvErr = nil
		case <-w.Ready():
			if err := sendEvents(stream, w); err != nil {
				return err
			}
		case <-w.Done():
			return w.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// receive reads client messages in a goroutine until the stream ends, which it does when the handler
// returns. The request channel is unbuffered, so the client cannot queue changes faster than they are
// confirmed; flow control holds it back.
func receive(stream identityv1.UserService_UserActivityServer) (<-chan *identityv1.UserActivityRequest, <-chan error) {
	reqs := make(chan *identityv1.UserActivityRequest)
	errc := make(chan error, 1)
	ctx := stream.Context()
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	return reqs, errc
}

// sendEvents sends every queued event of w.
func sendEvents(stream identityv1.UserService_UserActivityServer, w *identity.Watch) error {
	for {
		ev, ok := w.Next()
		if !ok {
			return nil
		}
		if err := stream.Send(encodeEvent(ev)); err != nil {
			return err
		}
	}
}
