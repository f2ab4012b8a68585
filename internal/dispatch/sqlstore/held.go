package sqlstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/database"
)

// Held tasks without their documents. The engine asks for the tasks its busy candidates hold many times
// over (every batch whose searches find a courier), and of each it needs a few fields of the document
// (heldDoc); a task's document only changes with its version. So the reads of held tasks select, per
// courier, the list of its tasks' ids and versions from the columns (one row per courier), and take the
// courier's tasks as they were the last time the same list was read (heldSets); for a list not seen
// before, they decode the document only of a task whose version the store has not decoded before: the
// fields decoded are kept per task id with their version (heldCache).

// maxHeldCache bounds the tasks heldCache keeps: beyond it, it starts afresh.
const maxHeldCache = 1 << 15

// heldCache is the held fields of tasks decoded before, by task id, each with the version it was
// decoded at. Safe for concurrent use; the zero value is empty.
type heldCache struct {
	mu    sync.Mutex
	tasks map[string]dispatch.Task
}

// get returns task id's fields at version, if decoded before.
func (c *heldCache) get(id string, version int64) (dispatch.Task, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tasks[id]
	return t, ok && t.Version == version
}

// put keeps ts.
func (c *heldCache) put(ts []dispatch.Task) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tasks == nil || len(c.tasks)+len(ts) > maxHeldCache {
		c.tasks = make(map[string]dispatch.Task, len(ts))
	}
	for _, t := range ts {
		c.tasks[t.ID] = t
	}
}

// maxHeldSets bounds the couriers heldSets keeps: beyond it, it starts afresh.
const maxHeldSets = 1 << 14

// heldSets is, by courier, the held tasks of the list of ids and versions last read for it (heldList),
// ordered as HeldTasks orders them. A list names each task at one version, and a task's fields at a
// version never change, so the same list always stands for the same tasks. Safe for concurrent use; the
// zero value is empty. Its slices are shared with every caller: never changed.
type heldSets struct {
	mu sync.Mutex
	by map[string]heldSet
}

// heldSet is one courier's entry of heldSets.
type heldSet struct {
	list  string
	tasks []dispatch.Task
}

// get returns the tasks courierID held when list was read for it, if known.
func (c *heldSets) get(courierID, list string) ([]dispatch.Task, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.by[courierID]
	return e.tasks, ok && e.list == list
}

// put keeps tasks as courierID's for list.
func (c *heldSets) put(courierID, list string, tasks []dispatch.Task) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.by == nil || len(c.by) >= maxHeldSets {
		c.by = map[string]heldSet{}
	}
	c.by[courierID] = heldSet{list: list, tasks: tasks}
}

// heldList returns the SQL expression of one courier's list of held tasks, in the read's order:
// "<bytes of id>:<id><version>" for each, joined by commas (parseHeldList reads it). The id's length
// says where it ends, so the list reads back the same whatever an id holds.
func (s *Store) heldList() string {
	entry := `octet_length(id) || ':' || id || version`
	if s.e.Dialect == database.Postgres {
		return `string_agg(` + entry + `, ',')`
	}
	return `group_concat(` + entry + `, ',')`
}

// parseHeldList appends the tasks of courierID's list (heldList) to refs.
func parseHeldList(refs []heldRef, courierID, list string) ([]heldRef, error) {
	for rest := list; rest != ""; {
		colon := strings.IndexByte(rest, ':')
		n, err := strconv.Atoi(rest[:max(colon, 0)])
		if colon < 0 || err != nil || n < 0 || colon+1+n > len(rest) {
			return nil, fmt.Errorf("read the held tasks of courier %s: malformed list %q", courierID, list)
		}
		id := rest[colon+1 : colon+1+n]
		rest = rest[colon+1+n:]
		end := strings.IndexByte(rest, ',')
		if end < 0 {
			end = len(rest)
		}
		version, err := strconv.ParseInt(rest[:end], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("read the held tasks of courier %s: malformed list %q", courierID, list)
		}
		refs = append(refs, heldRef{id: id, courierID: courierID, version: version})
		rest = rest[min(end+1, len(rest)):]
	}
	return refs, nil
}

// heldRef is a held task as the columns say: its id, holder and version.
type heldRef struct {
	id, courierID string
	version       int64
}

// heldDoc is what the reads of held tasks decode of a task's doc: decoding into it skips the rest of
// the document (history, offers, proofs) instead of building it.
type heldDoc struct {
	ID         string
	State      dispatch.State
	CourierID  string
	Pickup     dispatch.Stop
	Dropoff    dispatch.Stop
	AssignTime time.Time
}

// heldDocOf returns the fields of t that a heldDoc holds.
func heldDocOf(t dispatch.Task) heldDoc {
	return heldDoc{ID: t.ID, State: t.State, CourierID: t.CourierID, Pickup: t.Pickup, Dropoff: t.Dropoff, AssignTime: t.AssignTime}
}

// task returns the task with h's fields set, and no others.
func (h heldDoc) task() dispatch.Task {
	return dispatch.Task{ID: h.ID, State: h.State, CourierID: h.CourierID, Pickup: h.Pickup, Dropoff: h.Dropoff, AssignTime: h.AssignTime}
}

// heldTasks returns the tasks of refs by holder, ordered as HeldTasks orders them: from heldCache, and
// in one more read those whose version it does not have. A task that changed hands or stopped being
// held between the reads is left out, as if the first read had come after the change.
func (s *Store) heldTasks(ctx context.Context, refs []heldRef) (map[string][]dispatch.Task, error) {
	out := map[string][]dispatch.Task{}
	var missing []heldRef
	for _, r := range refs {
		if t, ok := s.held.get(r.id, r.version); ok && t.CourierID == r.courierID {
			out[r.courierID] = append(out[r.courierID], t)
			continue
		}
		missing = append(missing, r)
	}
	if len(missing) > 0 {
		got, err := s.decodeHeld(ctx, missing)
		if err != nil {
			return nil, err
		}
		s.held.put(got)
		holder := make(map[string]string, len(missing))
		for _, r := range missing {
			holder[r.id] = r.courierID
		}
		for _, t := range got {
			if t.State.Held() && t.CourierID == holder[t.ID] {
				out[t.CourierID] = append(out[t.CourierID], t)
			}
		}
	}
	for _, ts := range out {
		slices.SortFunc(ts, func(a, b dispatch.Task) int {
			return cmp.Or(a.AssignTime.Compare(b.AssignTime), strings.Compare(a.ID, b.ID))
		})
	}
	return out, nil
}

// decodeHeld reads the documents of refs' tasks, in one read per maxBatchLock of them, and decodes
// their held fields (or takes them from s.docs, which has the documents the store wrote lately).
func (s *Store) decodeHeld(ctx context.Context, refs []heldRef) ([]dispatch.Task, error) {
	var out []dispatch.Task
	for start := 0; start < len(refs); start += maxBatchLock {
		part := refs[start:min(start+maxBatchLock, len(refs))]
		ids := make([]string, len(part))
		for i, r := range part {
			ids[i] = r.id
		}
		cond, arg, err := s.inList("id", 1, ids)
		if err != nil {
			return nil, err
		}
		what := fmt.Sprintf("load %d held tasks", len(part))
		rows, err := s.read.QueryContext(ctx, `SELECT version, doc FROM tasks WHERE `+cond, arg)
		if err != nil {
			return nil, s.e.MapError(err, what)
		}
		got, err := collect(rows, func(r scanner) (dispatch.Task, error) {
			var (
				version int64
				doc     []byte
				h       heldDoc
			)
			if err := r.Scan(&version, &doc); err != nil {
				return dispatch.Task{}, err
			}
			if t, ok := s.docs.held(doc); ok {
				t.Version = version
				return t, nil
			}
			if err := decode(doc, &h, "held task"); err != nil {
				return dispatch.Task{}, err
			}
			t := h.task()
			t.Version = version
			return t, nil
		})
		if err != nil {
			return nil, s.e.MapError(err, what)
		}
		out = append(out, got...)
	}
	return out, nil
}

// CourierStates implements dispatch.Store. On SQLite it answers from the couriers' index the Stores of
// the database keep in memory (courierindex.go), without a statement once that is loaded. Otherwise
// (PostgreSQL, or an index not loaded) in one statement: the connected couriers (as Connected; on
// SQLite, those that are not), the couriers with an open offer (as OfferOpen) and the list of held
// tasks' ids and versions of each courier holding some (as HeldTasksOf), one part of a UNION ALL each;
// the held tasks' fields then come from heldSets, or for a list it does not know, from heldTasks.
//
// Loading the index is a transaction function of the writer's group: CourierStates (and Connected,
// OfferOpen and HeldTasksOf) must never be called from inside another transaction function of this
// store, which would wait for its own group.
func (s *Store) CourierStates(ctx context.Context, courierIDs []string, since time.Time, heldOf []string) (dispatch.CourierStates, error) {
	return s.courierStates(ctx, courierIDs, partConnected|partOfferOpen, since, heldOf)
}

// The kinds of courierStates' rows: small integers, which the drivers hand over without allocating (a
// one-letter text would be a new string per row).
const (
	kindConnected    = 1
	kindOfferOpen    = 2
	kindHeld         = 3
	kindNotConnected = 4
)

// The parts of courierStates that read about its courierIDs.
const (
	partConnected = 1 << iota // sessions open with a heartbeat after since
	partOfferOpen             // an open offer
)

// courierStates is CourierStates reading only parts about courierIDs (the held tasks of heldOf when
// that is not empty): Connected, OfferOpen and HeldTasksOf are each one part of it. It answers from the
// couriers' index when the Store has one that is loaded (SQLite), and from the database otherwise
// (sqlCourierStates).
func (s *Store) courierStates(ctx context.Context, courierIDs []string, parts int, since time.Time, heldOf []string) (dispatch.CourierStates, error) {
	out := dispatch.CourierStates{Connected: map[string]bool{}, OfferOpen: map[string]bool{}, Held: map[string][]dispatch.Task{}}
	if len(courierIDs) == 0 {
		parts = 0
	}
	if parts == 0 && len(heldOf) == 0 {
		return out, nil
	}
	if s.states != nil {
		if st, ok, err := s.indexedStates(ctx, courierIDs, parts, since, heldOf); ok || err != nil {
			return st, err
		}
	}
	return s.sqlCourierStates(ctx, courierIDs, parts, since, heldOf)
}

// sqlCourierStates is courierStates read from the database.
//
// On SQLite the parts about courierIDs look each id up (a correlated EXISTS per id of the list, an
// index seek each) and return a row only for the exceptions: a courier not connected, a courier with
// an open offer. Most couriers a batch reads are connected without an offer, and a row costs more than
// the seek (the driver's step and scan, a string per column); the list joined with IN was moreover
// built into a temporary index first. On PostgreSQL they select the connected couriers with `= ANY`
// (the correlated form doubled the server's CPU per assignment in the load test there: its plans for
// it are worse than for the join), and those with an open offer by one index probe per courier that
// stops at the first open offer.
func (s *Store) sqlCourierStates(ctx context.Context, courierIDs []string, parts int, since time.Time, heldOf []string) (dispatch.CourierStates, error) {
	out := dispatch.CourierStates{Connected: map[string]bool{}, OfferOpen: map[string]bool{}, Held: map[string][]dispatch.Task{}}
	if len(courierIDs) == 0 {
		parts = 0
	}
	var (
		args    []any
		selects []string
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	exceptions := parts != 0 && s.e.Dialect == database.SQLite
	if parts != 0 && !exceptions {
		list := "$" + strconv.Itoa(len(args)+1)
		conn, v, err := s.inList("courier_id", len(args)+1, courierIDs)
		if err != nil {
			return dispatch.CourierStates{}, err
		}
		args = append(args, v)
		if parts&partConnected != 0 {
			open, heartbeat := arg(true), arg(s.time(since))
			selects = append(selects, `SELECT `+strconv.Itoa(kindConnected)+`, courier_id, '' FROM sessions WHERE is_open = `+open+` AND heartbeat > `+heartbeat+` AND `+conn)
		}
		if parts&partOfferOpen != 0 {
			// One probe of tasks_offer_courier per courier, stopped at the first row (LIMIT 1), and
			// no condition on state: offer_courier_id is set exactly while a task is OFFERED with an
			// open offer (offerCourier), so the index answers alone. The planner then takes a plain
			// index scan, which marks the entries of dead row versions it meets (a task's earlier
			// offers) so that later probes skip them; `state = 'offered' AND offer_courier_id =
			// ANY(...)` was a bitmap scan ANDed with tasks_state_list, which visits every dead version
			// on the heap at every batch until a vacuum removes them (in the load test up to 1,600 of
			// the statement's 2,200 buffer reads a call, 1,000 heap pages for no row).
			selects = append(selects, `SELECT `+strconv.Itoa(kindOfferOpen)+`, ids.id, '' FROM unnest(`+list+`::text[]) AS ids(id)`+
				` CROSS JOIN LATERAL (SELECT FROM tasks WHERE offer_courier_id = ids.id LIMIT 1) AS offer`)
		}
	}
	if exceptions {
		list, v, err := s.idTable(len(args)+1, courierIDs)
		if err != nil {
			return dispatch.CourierStates{}, err
		}
		args = append(args, v)
		if parts&partConnected != 0 {
			open, heartbeat := arg(true), arg(s.time(since))
			selects = append(selects, `SELECT `+strconv.Itoa(kindNotConnected)+`, ids.value, '' FROM `+list+
				` WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE courier_id = ids.value AND is_open = `+open+` AND heartbeat > `+heartbeat+`)`)
		}
		if parts&partOfferOpen != 0 {
			offered := arg(string(dispatch.StateOffered))
			selects = append(selects, `SELECT `+strconv.Itoa(kindOfferOpen)+`, ids.value, '' FROM `+list+
				` WHERE EXISTS (SELECT 1 FROM tasks`+s.offerIndex()+` WHERE offer_courier_id = ids.value AND state = `+offered+`)`)
		}
	}
	if len(heldOf) > 0 {
		states, vals := heldStates(len(args) + 1)
		args = append(args, vals...)
		held, v, err := s.inList("courier_id", len(args)+1, heldOf)
		if err != nil {
			return dispatch.CourierStates{}, err
		}
		args = append(args, v)
		selects = append(selects, `SELECT `+strconv.Itoa(kindHeld)+`, courier_id, `+s.heldList()+` FROM tasks WHERE `+states+` AND `+held+` GROUP BY courier_id`)
	}
	what := fmt.Sprintf("look up the state of %d couriers", len(courierIDs)+len(heldOf))
	rows, err := s.read.QueryContext(ctx, strings.Join(selects, " UNION ALL "), args...)
	if err != nil {
		return dispatch.CourierStates{}, s.e.MapError(err, what)
	}
	// The rows are read here rather than through collect: one set of destinations for all of them
	// (collect's row would escape to the heap once per row, and there are hundreds per batch).
	var (
		unknown         []heldRead // the lists heldSets does not know
		notConnected    map[string]bool
		kind            int64
		courierID, list string
	)
	err = func() error {
		defer rows.Close()
		for rows.Next() {
			if err := rows.Scan(&kind, &courierID, &list); err != nil {
				return err
			}
			switch kind {
			case kindConnected:
				out.Connected[courierID] = true
			case kindNotConnected:
				if notConnected == nil {
					notConnected = map[string]bool{}
				}
				notConnected[courierID] = true
			case kindOfferOpen:
				out.OfferOpen[courierID] = true
			case kindHeld:
				if ts, ok := s.heldSets.get(courierID, list); ok {
					out.Held[courierID] = ts
					continue
				}
				unknown = append(unknown, heldRead{courierID: courierID, list: list})
			}
		}
		return rows.Err()
	}()
	if err != nil {
		return dispatch.CourierStates{}, s.e.MapError(err, what)
	}
	if exceptions && parts&partConnected != 0 {
		out.Connected = make(map[string]bool, len(courierIDs)-len(notConnected))
		for _, id := range courierIDs {
			if !notConnected[id] {
				out.Connected[id] = true
			}
		}
	}
	if len(unknown) > 0 {
		if err := s.learnHeldSets(ctx, unknown, out.Held); err != nil {
			return dispatch.CourierStates{}, err
		}
	}
	return out, nil
}

// heldRead is one courier's list of held tasks as read (heldList).
type heldRead struct {
	courierID, list string
}

// learnHeldSets reads the tasks of the lists in reads into held, and keeps in heldSets each list whose
// tasks were all read at the versions it names.
func (s *Store) learnHeldSets(ctx context.Context, reads []heldRead, held map[string][]dispatch.Task) error {
	var refs []heldRef
	for _, r := range reads {
		var err error
		if refs, err = parseHeldList(refs, r.courierID, r.list); err != nil {
			return err
		}
	}
	got, err := s.heldTasks(ctx, refs)
	if err != nil {
		return err
	}
	want := make(map[string]int64, len(refs)) // task id: the version its list names
	named := make(map[string]int, len(reads)) // courier id: how many tasks its list names
	for _, r := range refs {
		want[r.id] = r.version
		named[r.courierID]++
	}
	for _, r := range reads {
		ts := got[r.courierID]
		if len(ts) == 0 {
			continue
		}
		held[r.courierID] = ts
		exact := len(ts) == named[r.courierID]
		for _, t := range ts {
			exact = exact && want[t.ID] == t.Version
		}
		if exact {
			s.heldSets.put(r.courierID, r.list, ts)
		}
	}
	return nil
}

// inList returns the condition that col is one of ids, with ids as the one argument $n: `col = ANY($n)`
// (a text[]) on PostgreSQL, `col IN (SELECT value FROM json_each($n))` (a JSON array) on SQLite. One
// argument whatever the number of ids keeps the statement's text the same from call to call (a
// statement cache keeps one statement, not one per length of the list), and SQLite's driver binds each
// argument by looking through all of them, which is quadratic in their number.
func (s *Store) inList(col string, n int, ids []string) (string, any, error) {
	if s.e.Dialect == database.Postgres {
		return col + " = ANY($" + strconv.Itoa(n) + ")", ids, nil
	}
	doc, err := jsonIDs(ids)
	if err != nil {
		return "", nil, err
	}
	return col + " IN (SELECT value FROM json_each($" + strconv.Itoa(n) + "))", doc, nil
}

// idTable returns ids as a table of one column, value, named ids, with ids as the one argument $n (as
// inList): `json_each($n) AS ids` (SQLite only).
func (s *Store) idTable(n int, ids []string) (string, any, error) {
	doc, err := jsonIDs(ids)
	if err != nil {
		return "", nil, err
	}
	return "json_each($" + strconv.Itoa(n) + ") AS ids", doc, nil
}

// jsonIDs is ids as the JSON array SQLite's json_each reads them from (inList, idTable).
func jsonIDs(ids []string) (string, error) {
	doc, err := json.Marshal(ids)
	if err != nil {
		return "", fmt.Errorf("encode %d ids: %w", len(ids), err)
	}
	return string(doc), nil
}

// offerIndex follows the tasks table in a read of open offers by courier: on SQLite it names the index
// by offer courier, which the planner, not knowing how many ids a JSON list holds, could otherwise pass
// over for the index by state.
func (s *Store) offerIndex() string {
	if s.e.Dialect == database.SQLite {
		return " INDEXED BY tasks_offer_courier"
	}
	return ""
}

// heldStates returns the condition "state IN (...)" over dispatch.HeldStates, its placeholders numbered
// from first, and their arguments.
func heldStates(first int) (string, []any) {
	marks := make([]string, len(dispatch.HeldStates))
	args := make([]any, len(dispatch.HeldStates))
	for i, st := range dispatch.HeldStates {
		marks[i], args[i] = "$"+strconv.Itoa(first+i), string(st)
	}
	return "state IN (" + strings.Join(marks, ", ") + ")", args
}
