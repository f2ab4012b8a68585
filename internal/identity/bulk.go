package identity

import (
	"context"
	"fmt"
	"iter"
	"runtime"
	"sync"

	"lastmile/internal/platform/apperr"
)

// bulkBatch is how many users one Store.CreateUsers transaction inserts.
const bulkBatch = 100

// BulkItem is one item of BulkCreateUsers.
type BulkItem struct {
	User NewUser
	// Err, when set, is what the transport found wrong with the item while decoding it (typically an
	// Invalid error with field violations); the item is reported with it and not created.
	Err error
}

// BulkResult is the outcome of one BulkCreateUsers item.
type BulkResult struct {
	// Index is the item's position in the input, from 0.
	Index int
	// UserID is the id of the created user; empty when Err is set.
	UserID string
	// Err is why the item failed: Invalid (with field violations), Conflict, or Internal (the item could
	// not be stored; the cause is logged, not returned).
	Err error
}

// BulkCreateUsers creates users from items, one result per item in input order. Admins only; admins may
// set any role.
//
// A bad item never aborts the others: it is reported in its result. Items are consumed as they arrive and
// inserted in batches of bulkBatch, one transaction per batch (each user under its own savepoint), with
// the password hashes of a batch computed in parallel. At most MaxBulkItems items: one more ends the call
// with Invalid, and the batches inserted before stay inserted.
//
// Errors: PermissionDenied for non-admins; Invalid for too many items; an error of the items sequence
// (the client stream broke) or of ctx, returned as is.
func (s *Service) BulkCreateUsers(ctx context.Context, items iter.Seq2[BulkItem, error]) ([]BulkResult, error) {
	if !callerOf(ctx).isAdmin() {
		return nil, apperr.Errorf(apperr.PermissionDenied, "only admins may create users in bulk")
	}
	var (
		results []BulkResult
		pending []int // indexes of items waiting for the next batch
		inputs  = map[int]NewUser{}
	)
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		batch := make([]NewUser, len(pending))
		for i, idx := range pending {
			batch[i] = inputs[idx]
			delete(inputs, idx)
		}
		errs, ids, err := s.createBatch(ctx, batch)
		if err != nil {
			return err
		}
		for i, idx := range pending {
			results[idx].UserID, results[idx].Err = ids[i], errs[i]
		}
		pending = pending[:0]
		return nil
	}
	for item, err := range items {
		if err != nil {
			return nil, err
		}
		if len(results) == MaxBulkItems {
			return nil, apperr.Errorf(apperr.Invalid, "at most %d items per call; the items before the limit were processed", MaxBulkItems)
		}
		idx := len(results)
		results = append(results, BulkResult{Index: idx, Err: item.Err})
		if item.Err != nil {
			continue
		}
		inputs[idx] = item.User
		pending = append(pending, idx)
		if len(pending) == bulkBatch {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return results, nil
}

// createBatch validates and hashes the users of one batch in parallel, then inserts the valid ones in one
// transaction. It returns each user's error and id; err is only for a cancelled ctx.
func (s *Service) createBatch(ctx context.Context, batch []NewUser) (errs []error, ids []string, err error) {
	errs = make([]error, len(batch))
	ids = make([]string, len(batch))
	users := make([]User, len(batch))
	// Hashing dominates: Argon2id costs tens of milliseconds and is memory-hard. The hasher bounds its own
	// concurrency; this bound only keeps idle goroutines from piling up in front of it.
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, in := range batch {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			users[i], errs[i] = s.newUser(ctx, in, nil)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	// Fresh ids in item order, so that the users list in the order they were sent; the parallel hashing
	// finished in any order.
	for i := range users {
		if errs[i] == nil {
			users[i].ID = newID()
		}
	}
	var valid []User
	var at []int
	for i, e := range errs {
		switch {
		case e == nil:
			valid, at = append(valid, users[i]), append(at, i)
		case apperr.CodeOf(e) != apperr.Invalid:
			errs[i] = s.internalItemError(ctx, e)
		}
	}
	if len(valid) == 0 {
		return errs, ids, nil
	}
	stored, err := s.store.CreateUsers(ctx, valid)
	if err == nil && len(stored) != len(valid) {
		err = fmt.Errorf("store returned %d results for %d users", len(stored), len(valid))
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, nil, ctxErr
		}
		err = s.internalItemError(ctx, fmt.Errorf("create %d users: %w", len(valid), err))
		for _, i := range at {
			errs[i] = err
		}
		return errs, ids, nil
	}
	for k, i := range at {
		switch e := stored[k]; apperr.CodeOf(e) {
		case "":
			ids[i] = valid[k].ID
		case apperr.Conflict, apperr.Invalid:
			errs[i] = e
		default:
			errs[i] = s.internalItemError(ctx, e)
		}
	}
	return errs, ids, nil
}

// internalItemError logs err and returns the Internal error that the item's result carries instead.
func (s *Service) internalItemError(ctx context.Context, err error) error {
	s.logger.ErrorContext(ctx, "bulk user item failed", "err", err)
	return apperr.Wrap(apperr.Internal, err, "the item could not be stored")
}
