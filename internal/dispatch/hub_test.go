package dispatch

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func feedTask(n int, version int64) Task {
	return Task{ID: fmt.Sprintf("task-%d", n), Version: version}
}

func taken(tasks []Task) []string {
	var out []string
	for _, t := range tasks {
		out = append(out, fmt.Sprintf("%s v%d", t.ID, t.Version))
	}
	return out
}

func TestTaskFeedKeepsTheLatestStatePerTaskInFirstChangeOrder(t *testing.T) {
	f := newTaskFeed()
	f.push(feedTask(1, 1))
	f.push(feedTask(2, 5))
	f.push(feedTask(1, 3))
	f.push(feedTask(1, 2)) // older than what waits: ignored
	f.push(feedTask(3, 1))
	select {
	case <-f.notify:
	default:
		t.Fatal("push did not notify")
	}
	tasks, resync := f.take()
	if diff := cmp.Diff([]string{"task-1 v3", "task-2 v5", "task-3 v1"}, taken(tasks)); diff != "" || resync {
		t.Errorf("take() = resync %v, tasks (-want +got):\n%s", resync, diff)
	}
	if tasks, resync := f.take(); len(tasks) != 0 || resync {
		t.Errorf("second take() = %v resync %v, want nothing", taken(tasks), resync)
	}
}

func TestTaskFeedOverflowAsksForAFreshSnapshot(t *testing.T) {
	f := newTaskFeed()
	for n := range maxPendingTasks {
		f.push(feedTask(n, 1))
	}
	f.push(feedTask(0, 2)) // a known task still fits
	f.push(feedTask(maxPendingTasks, 1))
	f.push(feedTask(maxPendingTasks+1, 1)) // ignored while a resync is pending
	tasks, resync := f.take()
	if len(tasks) != 0 || !resync {
		t.Fatalf("take() after an overflow = %d tasks, resync %v; want none and a resync", len(tasks), resync)
	}
	f.push(feedTask(7, 9))
	if tasks, resync := f.take(); cmp.Diff([]string{"task-7 v9"}, taken(tasks)) != "" || resync {
		t.Errorf("take() after the resync = %v resync %v, want task-7 v9", taken(tasks), resync)
	}
}

func TestHubWakeAllResyncsWatchersAndRechecksSessions(t *testing.T) {
	h := newHub(&Service{})
	one, all := newTaskFeed(), newTaskFeed()
	stopOne := h.watchTask("task-1", one)
	stopAll := h.watchAll(all)
	c := &CourierSession{id: "s1", courierID: "c1", wake: make(chan struct{}, 1)}
	if !h.addSession(c) {
		t.Fatal("addSession refused before a drain")
	}
	h.wakeAll()
	for name, f := range map[string]*taskFeed{"task watcher": one, "list watcher": all} {
		if _, resync := f.take(); !resync {
			t.Errorf("%s: no resync after wakeAll", name)
		}
	}
	c.mu.Lock()
	stale := c.stale
	c.mu.Unlock()
	if !stale || len(c.wake) != 1 {
		t.Errorf("session after wakeAll: stale %v, woken %v; want both", stale, len(c.wake) == 1)
	}

	c.mu.Lock()
	c.stale = false
	c.mu.Unlock()
	h.replaceOthers("c1", "s1")
	c.mu.Lock()
	stale = c.stale
	c.mu.Unlock()
	if stale {
		t.Error("replaceOthers made the current session check its record")
	}
	h.replaceOthers("c1", "s2")
	c.mu.Lock()
	stale = c.stale
	c.mu.Unlock()
	if !stale || c.isReplaced() {
		t.Errorf("after replaceOthers naming another session: stale %v, replaced %v; want a check, not an end", stale, c.isReplaced())
	}

	stopOne()
	stopAll()
	h.removeSession(c)
	if len(h.tasks) != 0 || len(h.lists) != 0 || len(h.sessions) != 0 {
		t.Errorf("hub after unregistering: %d tasks, %d lists, %d couriers; want none", len(h.tasks), len(h.lists), len(h.sessions))
	}
	h.drain(0)
	if h.addSession(&CourierSession{id: "s3", courierID: "c1", wake: make(chan struct{}, 1)}) {
		t.Error("addSession accepted a session while draining")
	}
}
