package courier

import (
	"context"
	"fmt"
	"time"
)

// Load warms the live state from the store: every courier with its status and claims, the current hour's
// availability and the latest persisted locations. Call it once before serving.
func (s *Service) Load(ctx context.Context) error {
	now := s.now()
	hour := now.UTC().Truncate(time.Hour)
	after := ""
	for {
		page, err := s.store.ListCouriers(ctx, Filter{}, after, 500)
		if err != nil {
			return fmt.Errorf("load couriers: %w", err)
		}
		if len(page) == 0 {
			break
		}
		ids := make([]string, len(page))
		for i, c := range page {
			ids[i] = c.ID
		}
		avail, err := s.store.AvailableAt(ctx, hour, ids)
		if err != nil {
			return fmt.Errorf("load availability: %w", err)
		}
		for _, c := range page {
			var tasks []string
			if c.ActiveTasks > 0 {
				claims, err := s.store.Claims(ctx, c.ID)
				if err != nil {
					return fmt.Errorf("load claims of %s: %w", c.ID, err)
				}
				tasks = taskIDs(claims)
			}
			s.live.set(c, tasks, avail[c.ID], hour, now)
		}
		after = page[len(page)-1].ID
	}
	fixes, err := s.store.LoadLocations(ctx)
	if err != nil {
		return fmt.Errorf("load locations: %w", err)
	}
	s.live.mu.Lock()
	for _, f := range fixes {
		if e := s.live.byID[f.CourierID]; e != nil {
			e.loc, e.hasLoc = f, true
			s.live.grid.put(e)
		}
	}
	s.live.mu.Unlock()
	s.lastHour = hour
	return nil
}

// Run persists accepted locations every FlushInterval (or sooner when FlushBatch couriers have unsaved
// ones) and refreshes the current hour's availability when the hour turns, until ctx ends. Then it ends
// every WatchCouriers stream (they get Unavailable), persists once more and returns the error of that last
// flush. Fixes ingested after Run returns are persisted only by a later Flush: call Flush once the server
// has stopped.
func (s *Service) Run(ctx context.Context) error {
	ticker := time.NewTicker(s.opts.FlushInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			s.watch.close()
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return s.Flush(flushCtx)
		case <-ticker.C:
			s.rollHour(ctx)
		case <-s.flushNow:
		}
		if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("persist courier locations; retrying at the next flush", "error", err.Error())
		}
	}
}

// Flush persists the locations accepted since the last flush. On failure they stay pending (unless a
// newer fix of the same courier arrived meanwhile) for the next flush.
func (s *Service) Flush(ctx context.Context) error {
	s.pendingMu.Lock()
	if len(s.pending) == 0 {
		s.pendingMu.Unlock()
		return nil
	}
	batch := make([]LocationFix, 0, len(s.pending))
	for _, f := range s.pending {
		batch = append(batch, f)
	}
	clear(s.pending)
	s.pendingMu.Unlock()

	if err := s.store.SaveLocations(ctx, batch); err != nil {
		s.pendingMu.Lock()
		for _, f := range batch {
			if _, newer := s.pending[f.CourierID]; !newer {
				s.pending[f.CourierID] = f
			}
		}
		s.pendingMu.Unlock()
		return fmt.Errorf("save %d courier locations: %w", len(batch), err)
	}
	return nil
}

// rollHour refreshes every courier's availability for the current hour when the hour has turned, and
// tells watchers about couriers whose availability changed.
func (s *Service) rollHour(ctx context.Context) {
	hour := s.now().UTC().Truncate(time.Hour)
	if !hour.After(s.lastHour) {
		return
	}
	ids := s.live.ids()
	var events []Event
	for len(ids) > 0 {
		n := min(len(ids), 500)
		avail, err := s.store.AvailableAt(ctx, hour, ids[:n])
		if err != nil {
			s.logger.Warn("refresh courier availability; retrying at the next tick", "error", err.Error())
			return
		}
		events = append(events, s.live.setAvailableNow(ids[:n], avail, hour, s.now())...)
		ids = ids[n:]
	}
	s.lastHour = hour
	s.watch.publish(events)
}
