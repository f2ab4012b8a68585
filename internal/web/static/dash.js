// dash.js: the dispatcher dashboard. State lives in two maps (tasks and couriers by id) fed by one event
// stream (GET /v1/events: tasks and courier positions); the map redraws from them once per animation
// frame, and the list and counters re-render at most five times a second, so a burst of events costs one
// paint. Details (timeline, explanation, proofs) are fetched when a task is opened.
'use strict';
(() => {
  const {$, el, api} = LM;
  const OPEN = ['PENDING', 'OFFERED', 'ASSIGNED', 'PICKED_UP'];
  const DONE = ['DELIVERED', 'CANCELLED', 'FAILED', 'UNASSIGNABLE'];
  const STATUSES = ['AVAILABLE', 'BUSY', 'ON_BREAK', 'OFFLINE'];
  // Couriers are told apart by shape as well as colour: circle, square, triangle, hollow circle.
  const STYLE = {AVAILABLE: {color: '#15803d', shape: 'circle'}, BUSY: {color: '#c2410c', shape: 'square'},
    ON_BREAK: {color: '#7c3aed', shape: 'triangle'}, OFFLINE: {color: '#9ca3af', shape: 'ring'}};
  const S = {
    tasks: new Map(), couriers: new Map(), done: {}, // done: totals of finished tasks by state
    filter: 'OPEN', search: '', sel: null, mode: null, hover: false, moved: false, stream: null,
    list: 'tasks', // which list the side panel shows: 'tasks' or 'couriers'
  };
  let view;

  // ---- session ------------------------------------------------------------------------------------
  function showLogin(msg) {
    if (S.stream) { S.stream.close(); S.stream = null; }
    $('login').hidden = false;
    $('login-error').textContent = msg || '';
    $('login-email').focus();
  }
  LM.onUnauthorized = () => showLogin('Your session has ended. Please log in again.');

  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const r = await LM.login($('login-email').value, $('login-password').value);
      $('login-password').value = '';
      begin(r.user);
    } catch (err) {
      $('login-error').textContent = err.status === 401 ? 'Wrong email or password.' : err.message;
    }
  });
  $('logout').addEventListener('click', async () => {
    await LM.logout().catch(() => {});
    location.reload();
  });

  // begin starts the dashboard for a signed-in user: dispatchers and admins only (the courier feed
  // refuses others).
  async function begin(user) {
    const role = (user && user.role) || '';
    if (role !== 'ROLE_DISPATCHER' && role !== 'ROLE_ADMIN') {
      await LM.logout().catch(() => {});
      showLogin('The dashboard is for dispatchers and admins.');
      return;
    }
    $('login').hidden = true;
    $('who').textContent = user.displayName || user.email || '';
    $('user').hidden = false;
    start();
  }

  // ---- data ---------------------------------------------------------------------------------------
  const stateOf = LM.taskState;
  function putTask(t) {
    const old = S.tasks.get(t.id);
    const st = stateOf(t);
    if (DONE.includes(st) && (!old || stateOf(old) !== st)) S.done[st] = (S.done[st] || 0) + 1;
    t._p = LM.project(t.pickup.location.latitude || 0, t.pickup.location.longitude || 0);
    t._d = LM.project(t.dropoff.location.latitude || 0, t.dropoff.location.longitude || 0);
    S.tasks.set(t.id, t);
    if (S.sel && S.sel.kind === 'task' && S.sel.id === t.id && (!old || old.etag !== t.etag)) openTask(t.id);
    changed('list');
  }

  function putCourier(c, now) {
    const id = c.courierId || c.id;
    let k = S.couriers.get(id);
    if (!k) { k = {id, mover: null}; S.couriers.set(id, k); }
    if (c.displayName) k.name = c.displayName;
    const status = k.status;
    if (c.status) k.status = LM.courierStatus(c);
    if (c.transportMode) k.mode = c.transportMode.replace('TRANSPORT_MODE_', '');
    if (c.capacity) k.capacity = c.capacity;
    if (c.courierId) k.active = c.activeTaskCount || 0; // a CourierSnapshot: absent means 0
    const fix = c.lastLocation;
    if (fix && fix.location) {
      const p = LM.project(fix.location.latitude || 0, fix.location.longitude || 0);
      const at = LM.ms(fix.recordedAt);
      if (!k.mover) k.mover = new LM.Mover(p);
      else k.mover.set(p, now, at - k.fixAt);
      k.fixAt = at;
      k.heading = fix.heading;
    }
    changed(k.status !== status ? 'counters' : null);
  }

  // load fetches what the stream does not send: every courier (the stream's snapshot skips the offline
  // ones), the newest finished tasks for the list, and the totals of finished tasks for the counters.
  async function load() {
    const [cs, ts, ...totals] = await Promise.all([
      allCouriers(),
      api('GET', '/v1/tasks?pageSize=200&' + DONE.map((s) => 'states=TASK_STATE_' + s).join('&')),
      ...DONE.map((s) => api('GET', '/v1/tasks?pageSize=1&states=TASK_STATE_' + s)),
    ]);
    const now = performance.now();
    for (const c of cs.couriers || []) putCourier(c, now);
    for (const t of ts.tasks || []) if (!S.tasks.has(t.id)) putTask(t);
    DONE.forEach((s, i) => { S.done[s] = totals[i].totalSize || 0; });
  }

  // allCouriers lists every courier, 1,000 a page, up to 50 pages (50,000 couriers; a fleet larger than
  // that shows its first 50,000 and says so).
  async function allCouriers() {
    const couriers = [];
    let token = '';
    for (let page = 0; page < 50; page++) {
      const r = await api('GET', '/v1/couriers?pageSize=1000' + (token ? '&pageToken=' + encodeURIComponent(token) : ''));
      couriers.push(...(r.couriers || []));
      token = r.nextPageToken || '';
      if (!token) return {couriers};
    }
    LM.toast('Only the first ' + couriers.length + ' couriers are shown.');
    return {couriers};
  }

  function connect() {
    const conn = $('conn');
    S.stream = LM.stream('/v1/events?couriers=true', {
      open: () => { for (const t of S.tasks.values()) if (OPEN.includes(stateOf(t))) t._stale = true; },
      task: (t) => putTask(t),
      snapshotComplete: () => {
        // A resumed snapshot holds the tasks that finished while we were away (the event ids carry the
        // time to ask from), so tasks still stale are those it could not hold (over 5,000 finished, or
        // away for most of a day): fetch their final state (a few) or drop them.
        const stale = [...S.tasks.values()].filter((t) => t._stale);
        for (const t of stale) {
          if (stale.length > 50) S.tasks.delete(t.id);
          else api('GET', '/v1/tasks/' + t.id).then(putTask, () => S.tasks.delete(t.id));
        }
        if (!S.moved) fitAll();
        changed('list');
      },
      courier: (e) => putCourier(e.courier || {}, performance.now()),
      problem: (e, code) => {
        if (code !== 401) LM.toast('Live updates interrupted: ' + ((e.error && e.error.message) || 'server problem') + (code >= 500 ? '. Reconnecting.' : '.'));
      },
    }, (s, detail) => LM.showConn(conn, s, detail));
  }

  async function start() {
    try { await load(); } catch (err) { LM.fail(err); }
    connect();
    changed('list');
  }

  // ---- rendering: list and counters (throttled), map (per frame) -----------------------------------
  // changed(what) asks for a map frame and, for 'list' (tasks changed) or 'counters' (a courier's status
  // changed), one re-render of those within 200 ms. A courier that only moved costs a frame, nothing more.
  let timer = 0;
  const dirty = {list: false, counters: false};
  function changed(what) {
    view.redraw();
    if (!what) return;
    dirty[what] = true;
    if (!timer) {
      timer = setTimeout(() => {
        timer = 0;
        renderCounters();
        if (dirty.list) renderList();
        if (S.list === 'couriers') renderCouriers();
        dirty.list = dirty.counters = false;
      }, 200);
    }
  }

  function median(xs) {
    if (!xs.length) return NaN;
    xs.sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)];
  }

  function renderCounters() {
    const n = {}, now = Date.now();
    const waits = [];
    let late = 0;
    for (const t of S.tasks.values()) {
      const st = stateOf(t);
      if (OPEN.includes(st)) n[st] = (n[st] || 0) + 1;
      const a = LM.ms(t.assignTime);
      if (now - a < 15 * 60e3) waits.push(a - LM.ms(t.createTime));
      const end = t.dropoff.timeWindow && LM.ms(t.dropoff.timeWindow.endTime);
      if (OPEN.includes(st) && end < now) late++;
    }
    const cn = {};
    for (const c of S.couriers.values()) cn[c.status] = (cn[c.status] || 0) + 1;
    const item = (label, v, cls) => el('span', {className: 'counter ' + (cls || '')}, el('b', {}, String(v)), ' ' + label);
    $('counters').replaceChildren(
      el('span', {className: 'group'}, 'Tasks', ...OPEN.map((s) => item(s.replace('_', ' '), n[s] || 0)),
        ...DONE.map((s) => item(s, S.done[s] || 0))),
      el('span', {className: 'group'}, 'Couriers', ...STATUSES.map((s) => item(s.replace('_', ' '), cn[s] || 0))),
      el('span', {className: 'group'}, item('median to assign (15 min)', LM.dur(median(waits)))),
      el('span', {className: 'group'}, item('late', late, late ? 'late' : '')),
    );
  }

  // visible returns the tasks the list shows: the filter, the search, newest first.
  function visible() {
    const q = S.search.toLowerCase();
    return [...S.tasks.values()].filter((t) => {
      const st = stateOf(t);
      if (S.filter === 'OPEN' ? !OPEN.includes(st) : S.filter !== 'ALL' && st !== S.filter) return false;
      if (!q) return true;
      const c = S.couriers.get(t.courierId);
      return [t.id, st, t.pickup.address, t.dropoff.address, c && c.name].some((s) => (s || '').toLowerCase().includes(q));
    }).sort((a, b) => LM.ms(b.createTime) - LM.ms(a.createTime));
  }

  const words = (st) => st.replace('_', ' ').toLowerCase(); // PICKED_UP: "picked up"
  const chip = (st) => el('span', {className: 'chip s-' + st}, st.replace('_', ' '));
  const courierName = (id) => { const c = S.couriers.get(id); return (c && c.name) || LM.shortId(id); };

  function row(t) {
    const st = stateOf(t);
    const sel = S.sel && S.sel.id === t.id;
    // A row is reached with Tab and opened with Enter or Space, as with a click.
    // Its name for a screen reader says in words what the row shows.
    const label = ['Task ' + LM.shortId(t.id), words(st), (t.pickup.address || '?') + ' to ' + (t.dropoff.address || '?')]
      .concat(t.courierId ? 'courier ' + courierName(t.courierId) : [], 'created ' + LM.dur(Date.now() - LM.ms(t.createTime)) + ' ago');
    return el('li', {className: sel ? 'sel' : '', dataset: {id: t.id}, tabIndex: 0, 'aria-current': sel ? 'true' : 'false', ariaLabel: label.join(', '),
      onclick: () => select('task', t.id),
      onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select('task', t.id); } }},
    chip(st), el('code', {}, LM.shortId(t.id)),
    el('span', {className: 'who muted'}, t.courierId ? courierName(t.courierId) : ''),
    el('span', {className: 'age muted'}, LM.dur(Date.now() - LM.ms(t.createTime))),
    el('span', {className: 'route'}, (t.pickup.address || '?') + ' → ' + (t.dropoff.address || '?')));
  }

  function renderList() {
    const counts = {ALL: S.tasks.size, OPEN: 0};
    for (const t of S.tasks.values()) {
      const st = stateOf(t);
      counts[st] = (counts[st] || 0) + 1;
      if (OPEN.includes(st)) counts.OPEN++;
    }
    // Chips and rows are drawn anew: the one that had the keyboard focus gets it back.
    const had = document.activeElement && document.activeElement.parentNode;
    const chipFocus = had === $('filters') ? document.activeElement.dataset.f : '';
    $('filters').replaceChildren(...['OPEN', ...OPEN, ...DONE, 'ALL'].map((f) => el('button', {
      type: 'button', className: 'chip filter s-' + f + (S.filter === f ? ' on' : ''), ariaPressed: String(S.filter === f), dataset: {f},
      onclick: () => { S.filter = f; renderList(); }}, f.replace('_', ' ') + ' ' + (counts[f] || 0))));
    if (chipFocus) $('filters').querySelector('[data-f="' + chipFocus + '"]').focus({preventScroll: true});
    const ol = $('tasks');
    const focus = had === ol ? document.activeElement.dataset.id : '';
    const refocus = () => { const li = focus && ol.querySelector('[data-id="' + focus + '"]'); if (li) li.focus({preventScroll: true}); };
    if (S.hover && ol.children.length) {
      // Under the pointer rows keep their places; only their contents change. New rows wait. (A list with
      // no rows yet has nothing to keep: it fills even with the pointer resting where it appears.)
      for (const li of [...ol.children]) { const t = S.tasks.get(li.dataset.id); if (t) li.replaceWith(row(t)); }
      refocus();
      return;
    }
    const ts = visible();
    ol.replaceChildren(...ts.slice(0, 300).map(row));
    refocus();
    $('tasks-more').textContent = ts.length > 300 ? 'showing 300 of ' + ts.length + ' (search to narrow)' : '';
  }

  // The couriers list is the map's couriers by keyboard: one row per courier (status, name, transport,
  // tasks held of capacity), by status then name, or in assign mode by distance to the task's pickup
  // with the distance. Tab reaches each row; Enter or Space (or a click) opens the courier, or in assign mode gives
  // them the task.
  function renderCouriers() {
    const m = S.mode, t = m && m.kind === 'assign' ? S.tasks.get(m.taskId) : null;
    const now = performance.now(), q = S.search.toLowerCase();
    const km = (k) => (t && k.mover ? LM.groundMeters(k.mover.at(now), t._p) / 1000 : NaN);
    // Working couriers first (by status); in assign mode those who can take a task (available, or busy
    // with room) first, and the one holding it (who may no longer work) last.
    const free = (k) => (k.status === 'AVAILABLE' || k.status === 'BUSY') && (k.active || 0) < (k.capacity || 0);
    const rank = ({k}) => (t ? (k.id === t.courierId ? 2 : free(k) ? 0 : 1) : Math.max(0, STATUSES.indexOf(k.status)));
    const ks = [...S.couriers.values()].filter((k) => !q || [k.name, k.status, k.mode, k.id].some((v) => (v || '').toLowerCase().includes(q)))
      .map((k) => ({k, d: km(k)}))
      .sort((a, b) => rank(a) - rank(b) || (t ? (a.d >= 0 ? a.d : 1e9) - (b.d >= 0 ? b.d : 1e9) : 0) ||
        (a.k.name || '').localeCompare(b.k.name || '', undefined, {numeric: true}) || a.k.id.localeCompare(b.k.id));
    const ol = $('couriers');
    const focus = document.activeElement && document.activeElement.parentNode === ol ? document.activeElement.dataset.id : '';
    ol.setAttribute('aria-label', t ? 'Couriers, nearest to the pickup of task ' + LM.shortId(t.id) + ' first: Enter assigns' : 'Couriers, by status and name');
    ol.replaceChildren(...ks.slice(0, 300).map(({k, d}) => {
      const sel = S.sel && S.sel.kind === 'courier' && S.sel.id === k.id;
      const pick = () => (m && m.kind === 'assign' ? assign(m.taskId, k.id) : select('courier', k.id));
      const mode = (k.mode || '').toLowerCase(), load = (k.active || 0) + ' of ' + (k.capacity || 0) + ' tasks';
      return el('li', {className: sel ? 'sel' : '', dataset: {id: k.id}, tabIndex: 0, 'aria-current': sel ? 'true' : 'false',
        ariaLabel: [k.name || LM.shortId(k.id), words(k.status || 'OFFLINE'), mode, load].concat(d >= 0 ? d.toFixed(1) + ' km from the pickup' : []).join(', '),
        onclick: pick, onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); pick(); } }},
      chip(k.status || 'OFFLINE'), el('span', {className: 'name'}, k.name || LM.shortId(k.id)),
      el('span', {className: 'age muted'}, d >= 0 ? d.toFixed(1) + ' km' : ''),
      el('span', {className: 'route muted'}, mode + ' · ' + load));
    }));
    const li = focus && ol.querySelector('[data-id="' + focus + '"]');
    if (li) li.focus({preventScroll: true});
    $('couriers-more').textContent = ks.length > 300 ? 'showing 300 of ' + ks.length + ' (search to narrow)' : '';
  }

  // showList switches the side panel between the tasks and the couriers.
  function showList(which) {
    if (S.list !== which) { S.search = ''; $('search').value = ''; }
    S.list = which;
    for (const [id, on] of [['show-tasks', which === 'tasks'], ['show-couriers', which === 'couriers']]) $(id).ariaPressed = String(on);
    for (const id of ['filters', 'tasks', 'tasks-more']) $(id).hidden = which !== 'tasks';
    for (const id of ['couriers', 'couriers-more']) $(id).hidden = which !== 'couriers';
    $('search').placeholder = which === 'tasks' ? 'Search tasks' : 'Search couriers'; // the keys line says /
    $('search').ariaLabel = which === 'tasks' ? 'Search tasks' : 'Search couriers';
    if (which === 'couriers') renderCouriers(); else renderList();
  }

  // draw paints tasks, then couriers batched by status (one path per status), then the selection. It
  // returns true while a marker is still gliding, which asks for the next frame.
  function draw(c, v, now) {
    const sel = S.sel, selTask = sel && sel.kind === 'task' ? S.tasks.get(sel.id) : null;
    const selCourier = sel && sel.kind === 'courier' ? sel.id : selTask && selTask.courierId;
    const lit = (t) => !sel || (selTask ? t === selTask : t.courierId === selCourier);
    for (const t of S.tasks.values()) {
      const st = stateOf(t);
      if (!OPEN.includes(st) && t !== selTask) continue;
      const p = v.toScreen(t._p), d = v.toScreen(t._d);
      c.globalAlpha = lit(t) ? 1 : 0.25;
      if (st === 'ASSIGNED' || st === 'PICKED_UP' || t === selTask) {
        c.strokeStyle = '#475569'; c.lineWidth = t === selTask ? 2.5 : 1;
        c.beginPath(); c.moveTo(p.x, p.y); c.lineTo(d.x, d.y); c.stroke();
      }
      // Pickup: hollow blue square; dropoff: filled dark diamond.
      c.strokeStyle = '#1d4ed8'; c.lineWidth = 2; c.strokeRect(p.x - 4, p.y - 4, 8, 8);
      c.fillStyle = '#111827'; c.beginPath();
      c.moveTo(d.x, d.y - 6); c.lineTo(d.x + 5, d.y); c.lineTo(d.x, d.y + 6); c.lineTo(d.x - 5, d.y); c.fill();
    }
    let moving = false;
    const paths = {};
    for (const k of S.couriers.values()) {
      if (!k.mover) continue;
      if (k.mover.moving(now)) moving = true;
      const p = v.toScreen(k.mover.at(now));
      k.sx = p.x; k.sy = p.y;
      if (p.x < -10 || p.y < -10 || p.x > v.w + 10 || p.y > v.h + 10) continue;
      const key = (k.status || 'OFFLINE') + (!sel || k.id === selCourier ? '' : ':dim');
      (paths[key] = paths[key] || []).push(k);
    }
    for (const [key, ks] of Object.entries(paths)) {
      const [status, dim] = key.split(':');
      const s = STYLE[status] || STYLE.OFFLINE;
      c.globalAlpha = dim ? 0.3 : 1;
      c.fillStyle = s.color; c.strokeStyle = s.color; c.lineWidth = 2;
      c.beginPath();
      for (const k of ks) shape(c, s.shape, k.sx, k.sy, 6);
      if (s.shape === 'ring') c.stroke(); else c.fill();
      c.strokeStyle = '#1f2937'; c.lineWidth = 1.5; c.beginPath();
      for (const k of ks) {
        if (k.heading === undefined) continue; // a heading tick when the courier reports one
        const a = k.heading * Math.PI / 180;
        c.moveTo(k.sx + 7 * Math.sin(a), k.sy - 7 * Math.cos(a)); c.lineTo(k.sx + 12 * Math.sin(a), k.sy - 12 * Math.cos(a));
      }
      c.stroke();
    }
    c.globalAlpha = 1;
    const k = selCourier && S.couriers.get(selCourier);
    if (k && k.mover) {
      c.strokeStyle = '#111827'; c.lineWidth = 2; c.beginPath(); c.arc(k.sx, k.sy, 11, 0, 2 * Math.PI); c.stroke();
      label(c, k.name || LM.shortId(k.id), k.sx + 14, k.sy - 10);
      if (selTask && ['ASSIGNED', 'PICKED_UP'].includes(stateOf(selTask))) { // where the courier is heading next
        const to = v.toScreen(stateOf(selTask) === 'PICKED_UP' ? selTask._d : selTask._p);
        c.setLineDash([4, 4]); c.beginPath(); c.moveTo(k.sx, k.sy); c.lineTo(to.x, to.y); c.stroke(); c.setLineDash([]);
      }
    }
    if (document.activeElement === $('map')) { // the keyboard's pointer: Enter acts where the cross is
      const x = v.w / 2, y = v.h / 2;
      c.strokeStyle = '#111827'; c.lineWidth = 2; c.beginPath();
      c.moveTo(x - 16, y); c.lineTo(x - 5, y); c.moveTo(x + 5, y); c.lineTo(x + 16, y);
      c.moveTo(x, y - 16); c.lineTo(x, y - 5); c.moveTo(x, y + 5); c.lineTo(x, y + 16); c.stroke();
      c.beginPath(); c.arc(x, y, 12, 0, 2 * Math.PI); c.stroke();
    }
    const m = S.mode;
    if (m && m.kind === 'create') {
      for (const [p, name] of [[m.pickup, 'pickup'], [m.dropoff, 'dropoff']]) {
        if (!p) continue;
        const s = v.toScreen(p);
        c.fillStyle = '#1d4ed8'; c.beginPath(); c.arc(s.x, s.y, 7, 0, 2 * Math.PI); c.fill();
        label(c, name, s.x + 10, s.y - 8);
      }
    }
    return moving;
  }

  function shape(c, kind, x, y, r) {
    c.moveTo(x + r, y);
    if (kind === 'square') c.rect(x - r + 1, y - r + 1, 2 * r - 2, 2 * r - 2);
    else if (kind === 'triangle') { c.moveTo(x, y - r - 1); c.lineTo(x + r, y + r - 1); c.lineTo(x - r, y + r - 1); c.closePath(); }
    else c.arc(x, y, kind === 'ring' ? r - 1 : r, 0, 2 * Math.PI);
  }

  function label(c, text, x, y) {
    c.font = '600 14px system-ui, sans-serif';
    const w = c.measureText(text).width;
    c.fillStyle = 'rgba(255,255,255,.9)'; c.fillRect(x - 3, y - 13, w + 6, 18);
    c.fillStyle = '#111827'; c.fillText(text, x, y);
  }

  function fitAll() {
    const pts = [];
    for (const k of S.couriers.values()) if (k.mover && k.status !== 'OFFLINE') pts.push(k.mover.to);
    for (const t of S.tasks.values()) if (OPEN.includes(stateOf(t))) pts.push(t._p, t._d);
    view.fit(pts);
  }

  // ---- map clicks: select, create, assign ----------------------------------------------------------
  function nearest(p) {
    const s = view.toScreen(p);
    let best = null, bd = 12 * 12;
    // Where each courier is now in the view as it is now, not where the last frame drew them: a key that
    // panned the map and the Enter after it may both come before the next frame.
    const now = performance.now();
    for (const k of S.couriers.values()) {
      if (!k.mover) continue;
      const q = view.toScreen(k.mover.at(now)), d = (q.x - s.x) ** 2 + (q.y - s.y) ** 2;
      if (d < bd) { bd = d; best = {kind: 'courier', id: k.id}; }
    }
    for (const t of S.tasks.values()) {
      if (!OPEN.includes(stateOf(t))) continue;
      for (const q of [t._p, t._d]) {
        const o = view.toScreen(q), d = (o.x - s.x) ** 2 + (o.y - s.y) ** 2;
        if (d < bd) { bd = d; best = {kind: 'task', id: t.id}; }
      }
    }
    return best;
  }

  function click(p) {
    const m = S.mode;
    if (m && m.kind === 'create') {
      if (!m.pickup) m.pickup = p;
      else if (!m.dropoff) m.dropoff = p;
      renderCreate();
      view.redraw();
      return;
    }
    const hit = nearest(p);
    if (m && m.kind === 'assign') {
      if (hit && hit.kind === 'courier') assign(m.taskId, hit.id);
      return;
    }
    if (hit) select(hit.kind, hit.id);
  }

  function hint(text) { $('hint').hidden = !text; $('hint').textContent = text || ''; }

  // ---- the drawer -------------------------------------------------------------------------------
  function select(kind, id) {
    S.sel = {kind, id};
    S.mode = null; hint('');
    if (kind === 'task') openTask(id); else openCourier(id);
    changed('list');
  }

  function close() {
    if (S.mode) { S.mode = null; hint(''); if (S.sel) return select(S.sel.kind, S.sel.id); }
    S.sel = null;
    $('drawer').hidden = true;
    changed('list');
  }

  // drawer shows children in the drawer, leaving out the null and false of parts a task lacks (proofs).
  function drawer(...children) {
    $('drawer').hidden = false;
    $('drawer-body').replaceChildren(...children.filter((c) => c != null && c !== false));
  }

  const section = (title, ...body) => el('section', {}, el('h3', {}, title), ...body);
  const facts = (pairs) => el('dl', {className: 'facts'}, ...pairs.filter((p) => p[1] != null && p[1] !== '')
    .flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  const button = (text, onclick, cls) => el('button', {type: 'button', className: cls || '', onclick}, text);

  let opening = 0;
  async function openTask(id) {
    const seq = ++opening;
    let t, ex;
    try {
      [t, ex] = await Promise.all([api('GET', '/v1/tasks/' + id + '?view=TASK_VIEW_FULL'),
        api('GET', '/v1/tasks/' + id + '/explanation').catch(() => null)]);
    } catch (err) { LM.fail(err); return; }
    if (seq !== opening || !S.sel || S.sel.id !== id) return; // another task was opened meanwhile
    const st = stateOf(t);
    // AssignTask takes a picked-up task only when its courier may no longer work: ask their account.
    const holder = st === 'PICKED_UP' && t.courierId ? await accountOf(t.courierId) : null;
    if (seq !== opening || !S.sel || S.sel.id !== id) return;
    const actions = [];
    // The actions the contract allows in the task's state (dispatchers and admins, the only users of the
    // dashboard, may take them all). CancelTask takes a task until it is picked up; AssignTask the same
    // tasks, and a picked-up one whose courier may no longer work (account suspended or deleted, courier
    // role taken away): the parcel is recovered and another courier collects it. A picked-up task of a
    // courier who may still work stays theirs: no action but sharing.
    const beforePickup = ['PENDING', 'OFFERED', 'UNASSIGNABLE', 'ASSIGNED'].includes(st);
    let note = null;
    if (beforePickup) actions.push(button('Cancel task', () => cancel(t), 'danger'));
    if (beforePickup) {
      actions.push(button('Assign to a courier…', () => {
        assignMode(t.id, 'Click a courier on the map, or choose one in the list, to assign task ' + LM.shortId(t.id) + ' · Esc to stop');
      }));
    } else if (holder && holder.works === false) {
      actions.push(button('Reassign (courier can no longer work)…', () => {
        assignMode(t.id, 'Click the courier who will collect the parcel of task ' + LM.shortId(t.id) + ' from ' + courierName(t.courierId) + ' on the map, or choose one in the list · Esc to stop');
      }));
    } else if (holder) {
      note = el('p', {id: 'actions-note', className: 'muted'}, holder.works ?
        'Picked up: the parcel stays with ' + courierName(t.courierId) + ' until delivered. It may be given to another courier only if their account is suspended or deleted.' :
        'Picked up by ' + courierName(t.courierId) + ', whose account could not be checked (' + holder.text + '): reopen the task to try again.');
    }
    actions.push(el('button', {type: 'button', id: 'share', onclick: () => share(t)}, 'Share tracking link'));
    drawer(
      el('header', {}, chip(st), el('h2', {}, 'Task ', el('code', {id: 'drawer-task-id'}, LM.shortId(t.id)))),
      facts([['Pickup', t.pickup.address], ['Dropoff', t.dropoff.address],
        ['Courier', t.courierId ? el('a', {href: '#', onclick: (e) => { e.preventDefault(); select('courier', t.courierId); }}, courierName(t.courierId)) : 'none yet'],
        ['Priority', (t.priority || '').replace('TASK_PRIORITY_', '')], ['Size', (t.size || '').replace('PARCEL_SIZE_', '')],
        ['Notes', t.notes], ['Created', LM.clock(t.createTime)], ['Id', t.id]]),
      el('div', {className: 'actions'}, ...actions),
      note,
      el('div', {id: 'share-out'}),
      (t.proofs || []).length ? section('Proof of delivery', proofs(t)) : null,
      section('Timeline', timeline(t)),
      section('Assignment explanation', explanation(ex)),
    );
  }

  function timeline(t) {
    return el('ol', {className: 'timeline'}, ...(t.history || []).map((h) => el('li', {},
      el('time', {}, LM.clock(h.changeTime)), ' ', chip(LM.taskState(h)), ' ',
      el('span', {className: 'muted'}, 'by ' + (h.actor || 'ACTOR_SYSTEM').replace('ACTOR_', '').toLowerCase() +
        (h.courierId ? ' · ' + courierName(h.courierId) : '') + (h.comment ? ' · ' + h.comment : '')))));
  }

  // explanation renders each assignment decision, newest first, as a table of its candidates with the
  // winner on top, then the ranked ones, then the excluded ones with their reason.
  function explanation(ex) {
    const ds = (ex && ex.decisions) || [];
    if (!ds.length) return el('p', {className: 'muted'}, 'No assignment decision yet.');
    return ds.map((d, i) => {
      const cs = (d.candidates || []).slice().sort((a, b) => (b.courierId === d.winnerCourierId) - (a.courierId === d.winnerCourierId) ||
        (!!a.exclusionReason - !!b.exclusionReason) || (a.rank || 1e9) - (b.rank || 1e9));
      const num = (v, digits) => (v === undefined ? '0' : Number(v).toFixed(digits));
      return el('details', {className: 'decision', open: i === 0},
        el('summary', {}, LM.clock(d.decideTime) + ' · ' + (d.outcome || '').replace('DECISION_OUTCOME_', '') +
          ' · ' + (d.trigger || '').replace('DECISION_TRIGGER_', '').toLowerCase() + (d.degraded ? ' · degraded estimate' : '')),
        d.rationale ? el('p', {}, d.rationale) : null,
        el('table', {className: 'explain'},
          el('thead', {}, el('tr', {}, ...['Courier', 'ETA', 'Distance', 'Load', 'ETA sc.', 'Dist. sc.', 'Load sc.', 'Fair sc.', 'Total', 'Excluded'].map((h) => el('th', {}, h)))),
          el('tbody', {}, ...cs.map((c) => {
            const s = c.score || {}, win = c.courierId === d.winnerCourierId;
            return el('tr', {className: win ? 'winner' : c.exclusionReason ? 'excluded' : ''},
              el('td', {}, (win ? '★ ' : '') + courierName(c.courierId)),
              el('td', {}, LM.dur(LM.seconds(s.pickupEta) * 1000)),
              el('td', {}, s.pickupDistanceMeters ? (s.pickupDistanceMeters / 1000).toFixed(2) + ' km' : '–'),
              el('td', {}, (s.activeTasks || 0) + '/' + (s.capacity || 0)),
              el('td', {}, num(s.etaScore, 2)), el('td', {}, num(s.distanceScore, 2)), el('td', {}, num(s.loadScore, 2)),
              el('td', {}, num(s.fairnessScore, 2)), el('td', {}, el('b', {}, num(s.totalScore, 3))),
              el('td', {}, (c.exclusionReason || '').replace('EXCLUSION_REASON_', '') ||
                (c.declineReason ? 'declined: ' + c.declineReason.replace('DECLINE_REASON_', '') : '')));
          }))));
    });
  }

  function proofs(t) {
    const ps = t.proofs || [];
    return el('div', {className: 'proofs'}, ...ps.map((p) => {
      const stage = (p.stage || '').replace('TASK_STAGE_', '').toLowerCase();
      const kind = (p.kind || '').replace('PROOF_KIND_', '').toLowerCase();
      if (p.uploadId && (p.contentType || '').startsWith('image/')) {
        const url = '/v1/tasks/' + t.id + '/proofs/' + p.uploadId + '/content';
        return el('figure', {}, el('a', {href: url, target: '_blank', rel: 'noopener', title: 'Open full size'},
          el('img', {className: 'thumb proof-photo', src: url, alt: kind + ' at ' + stage})), el('figcaption', {}, kind + ' · ' + stage + ' · ' + LM.clock(p.captureTime || p.createTime)));
      }
      return el('p', {}, kind + ' · ' + stage + (p.value ? ': ' + p.value : '') + (p.signerName ? ' (' + p.signerName + ')' : ''));
    }));
  }

  // accountOf says whether the courier's account lets them work ({works, text}; works is undefined when
  // it cannot be told): the courier service's status does not (a suspended courier stays BUSY with a
  // picked-up parcel, which a dispatcher may then reassign). Dispatchers do not see deleted users (404),
  // admins do.
  async function accountOf(id) {
    let c;
    try { c = await api('GET', '/v1/couriers/' + id); } catch (err) { return {text: err.message}; }
    try {
      const u = await api('GET', '/v1/users/' + c.userId);
      if (u.status === 'USER_STATUS_SUSPENDED') return {works: false, text: 'suspended: may not work'};
      if (u.status === 'USER_STATUS_DELETED') return {works: false, text: 'deleted: may not work'};
      return u.role === 'ROLE_COURIER' ? {works: true, text: 'active'} : {works: false, text: 'no longer a courier: may not work'};
    } catch (err) { return err.status === 404 ? {works: false, text: 'deleted: may not work'} : {text: err.message}; }
  }

  async function openCourier(id) {
    const seq = ++opening;
    let o, delivered, account;
    try {
      [o, delivered, account] = await Promise.all([api('GET', '/v1/couriers/' + id + '/overview'),
        api('GET', '/v1/tasks?pageSize=200&states=TASK_STATE_DELIVERED&courierId=' + id), accountOf(id)]);
    } catch (err) { LM.fail(err); return; }
    if (seq !== opening || !S.sel || S.sel.id !== id) return; // closed, or something else opened meanwhile
    const c = o.courier || {}, k = S.couriers.get(id) || {};
    const today = new Date().toDateString();
    const todays = (delivered.tasks || []).filter((t) => new Date(LM.ms(t.deliverTime)).toDateString() === today).length;
    drawer(
      el('header', {id: 'drawer-courier'}, el('span', {className: 'chip s-' + LM.courierStatus(c)}, LM.courierStatus(c)), el('h2', {}, c.displayName || k.name || LM.shortId(id))),
      facts([['Transport', (c.transportMode || '').replace('TRANSPORT_MODE_', '')],
        ['Capacity used', (c.activeTaskCount || 0) + ' of ' + (c.capacity || 0)],
        ['Last fix', k.fixAt ? LM.dur(Date.now() - k.fixAt) + ' ago' : 'none'],
        ['Delivered today', String(todays) + (delivered.nextPageToken ? '+' : '')], ['Account', account.works === undefined ? 'unknown (' + account.text + ')' : account.text], ['Id', id]]),
      section('Active tasks', el('ul', {className: 'plain'}, ...(o.activeTasks || []).map((t) => el('li', {},
        el('a', {href: '#', onclick: (e) => { e.preventDefault(); select('task', t.id); }}, chip(stateOf(t)), ' ' + LM.shortId(t.id) + ' ' + (t.dropoff.address || '')))))),
      section('Open offers', el('p', {className: 'muted'}, String((o.openOffers || []).length))),
    );
  }

  async function cancel(t) {
    if (!confirm('Cancel task ' + LM.shortId(t.id) + '?')) return;
    try { putTask(await api('POST', '/v1/tasks/' + t.id + ':cancel', {reason: 'CANCEL_REASON_OTHER', comment: 'cancelled from the dashboard', etag: t.etag})); } catch (err) { LM.fail(err); }
  }

  // assignMode waits for the courier to give a task to: clicked on the map, or chosen in the couriers
  // list, which it shows nearest to the pickup first, the keyboard focus on the nearest.
  function assignMode(taskId, text) {
    S.mode = {kind: 'assign', taskId};
    hint(text);
    showList('couriers');
    const first = $('couriers').firstElementChild;
    if (first) first.focus();
  }

  async function assign(taskId, courierId) {
    S.mode = null; hint('');
    if (S.list === 'couriers') renderCouriers();
    try { putTask(await api('POST', '/v1/tasks/' + taskId + ':assign', {courierId, comment: 'assigned from the dashboard'})); } catch (err) { LM.fail(err); }
  }

  async function share(t) {
    try {
      const r = await api('POST', '/v1/tasks/' + t.id + ':share', {});
      const url = location.origin + r.path;
      const input = el('input', {type: 'text', readOnly: true, value: url, className: 'share-url'});
      $('share-out').replaceChildren(input, el('small', {className: 'muted'}, 'Anyone with this link can follow the delivery until ' + new Date(r.expireTime).toLocaleString() + '.'));
      input.select();
      if (navigator.clipboard) navigator.clipboard.writeText(url).then(() => LM.toast('Tracking link copied.'), () => {});
    } catch (err) { LM.fail(err); }
  }

  // ---- creating a task: click the pickup, click the dropoff, then the form ---------------------------
  function newTask() {
    S.sel = null;
    S.mode = {kind: 'create'};
    renderCreate();
    changed('list');
  }

  function renderCreate() {
    const m = S.mode;
    hint(!m.pickup ? 'Click the map where the parcel is picked up · Esc to stop' : !m.dropoff ? 'Now click where it is delivered' : '');
    const where = (p) => { const ll = LM.unproject(p); return ll.lat.toFixed(5) + ', ' + ll.lng.toFixed(5); };
    const field = (text, ...inputs) => el('label', {}, text, ...inputs);
    const select = (id, opts, def) => el('select', {id}, ...opts.map((o) => el('option', {value: o, selected: o === def}, o)));
    const body = [el('header', {}, el('h2', {}, 'New task'))];
    if (m.pickup && m.dropoff) {
      body.push(el('form', {id: 'create-form', className: 'form', onsubmit: (e) => { e.preventDefault(); submitTask(); }},
        field('Pickup address', el('input', {id: 'f-pickup', required: true, maxLength: 500, value: where(m.pickup)})),
        field('Dropoff address', el('input', {id: 'f-dropoff', required: true, maxLength: 500, value: where(m.dropoff)})),
        field('Customer', el('input', {id: 'f-customer-search', type: 'search', placeholder: 'search customers', autocomplete: 'off',
          oninput: (e) => { clearTimeout(m.searchTimer); m.searchTimer = setTimeout(() => customers(e.target.value), 300); }}),
        el('select', {id: 'f-customer', required: true})),
        field('Priority', select('f-priority', ['LOW', 'NORMAL', 'HIGH', 'URGENT'], 'NORMAL')),
        field('Size', select('f-size', ['SMALL', 'MEDIUM', 'LARGE', 'EXTRA_LARGE'], 'SMALL')),
        field('Notes', el('textarea', {id: 'f-notes', maxLength: 1000, rows: 2})),
        el('div', {className: 'actions'}, el('button', {type: 'submit', id: 'f-submit'}, 'Create task'), button('Cancel', close))));
    } else {
      body.push(el('p', {}, m.pickup ? 'Pickup set. Click the dropoff on the map.' : 'Click the pickup on the map.'));
    }
    drawer(...body);
    if (m.pickup && m.dropoff) { customers(''); $('f-pickup').focus(); $('f-pickup').select(); } // the form takes the focus, for the keyboard too
  }

  // customers fills the customer choice: a dispatcher creates tasks on a customer's behalf.
  async function customers(q) {
    try {
      const r = await api('GET', '/v1/users?pageSize=100&role=ROLE_CUSTOMER' + (q ? '&search=' + encodeURIComponent(q) : ''));
      const sel = $('f-customer');
      if (!sel) return;
      sel.replaceChildren(...(r.users || []).map((u) => el('option', {value: u.id}, (u.displayName || '') + ' <' + (u.email || u.id) + '>')));
      if (!sel.options.length) sel.append(el('option', {value: ''}, 'no customer matches'));
    } catch (err) { LM.fail(err); }
  }

  // requestId makes the create idempotent: a retried submit creates one task, not two.
  function requestId() {
    return 'dash-' + [...crypto.getRandomValues(new Uint8Array(12))].map((b) => b.toString(16).padStart(2, '0')).join('');
  }

  async function submitTask() {
    const m = S.mode, stop = (p, addr) => { const ll = LM.unproject(p); return {location: {latitude: ll.lat, longitude: ll.lng}, address: addr}; };
    const body = {requestId: m.requestId = m.requestId || requestId(),
      pickup: stop(m.pickup, $('f-pickup').value.trim()), dropoff: stop(m.dropoff, $('f-dropoff').value.trim()),
      priority: 'TASK_PRIORITY_' + $('f-priority').value, size: 'PARCEL_SIZE_' + $('f-size').value,
      customerId: $('f-customer').value};
    if (!body.customerId) { LM.toast('Choose the customer this delivery is for.'); return; }
    const notes = $('f-notes').value.trim();
    if (notes) body.notes = notes;
    $('f-submit').disabled = true;
    try {
      const t = await api('POST', '/v1/tasks', body);
      putTask(t);
      select('task', t.id);
    } catch (err) { LM.fail(err); $('f-submit').disabled = false; }
  }

  // ---- keyboard ---------------------------------------------------------------------------------
  document.addEventListener('keydown', (e) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName);
    if (e.key === 'Escape') { if (typing) e.target.blur(); else close(); return; }
    if (typing || e.ctrlKey || e.metaKey || e.altKey || !$('login').hidden) return;
    if (e.key === '/') { e.preventDefault(); $('search').focus(); } else if (e.key === 'j' || e.key === 'k') {
      const ts = visible();
      if (!ts.length) return;
      const i = S.sel && S.sel.kind === 'task' ? ts.findIndex((t) => t.id === S.sel.id) : -1;
      const next = ts[Math.max(0, Math.min(ts.length - 1, i + (e.key === 'j' ? 1 : -1)))];
      select('task', next.id);
      const li = $('tasks').querySelector('[data-id="' + next.id + '"]');
      if (li) li.scrollIntoView({block: 'nearest'});
    } else if (e.key === 'n') newTask(); else if (e.key === 'f') fitAll();
  });

  // The map by keyboard: Tab reaches it, arrows pan (with Shift, farther), + and - zoom, and Enter or
  // Space does what a click does, where the cross in the middle is: open the task or courier under it,
  // set a new task's pickup or dropoff, or pick the courier to assign.
  function mapKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const step = (e.shiftKey ? 0.5 : 0.125) / view.k, pan = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1]}[e.key];
    if (pan) { view.cx += pan[0] * step * view.w; view.cy += pan[1] * step * view.h; S.moved = true; view.redraw(); }
    else if (e.key === '+' || e.key === '=' || e.key === '-') { view.zoom(e.key === '-' ? 0.5 : 2); S.moved = true; }
    else if (e.key === 'Enter' || e.key === ' ') click(view.toWorld(view.w / 2, view.h / 2));
    else return;
    e.preventDefault();
    e.stopPropagation();
  }

  // ---- wiring -----------------------------------------------------------------------------------
  view = new LM.MapView($('map'), draw, click);
  $('map').addEventListener('keydown', mapKey);
  $('map').addEventListener('focus', () => view.redraw());
  $('map').addEventListener('blur', () => view.redraw());
  $('show-tasks').addEventListener('click', () => showList('tasks'));
  $('show-couriers').addEventListener('click', () => showList('couriers'));
  $('map').addEventListener('pointerdown', () => { S.moved = true; });
  $('map').addEventListener('wheel', () => { S.moved = true; }, {passive: true});
  $('fit').addEventListener('click', fitAll);
  $('new-task').addEventListener('click', newTask);
  $('close').addEventListener('click', close);
  $('search').addEventListener('input', (e) => { S.search = e.target.value; if (S.list === 'couriers') renderCouriers(); else renderList(); });
  $('collapse').addEventListener('click', () => document.body.classList.toggle('collapsed'));
  setInterval(() => changed('list'), 5000); // ages move on between events
  $('tasks').addEventListener('mouseenter', () => { S.hover = true; });
  $('tasks').addEventListener('mouseleave', () => { S.hover = false; renderList(); });
  for (const s of STATUSES) {
    const cv = el('canvas', {width: 16, height: 16});
    const c = cv.getContext('2d'), st = STYLE[s];
    c.fillStyle = st.color; c.strokeStyle = st.color; c.lineWidth = 2; c.beginPath(); shape(c, st.shape, 8, 8, 6);
    if (st.shape === 'ring') c.stroke(); else c.fill();
    $('legend').append(el('span', {}, cv, ' ' + s.replace('_', ' ').toLowerCase()));
  }
  $('legend').append(el('span', {}, '□ pickup'), el('span', {}, '◆ dropoff'));

  // For tests and the browser console: each courier's status and where it is drawn now (world units).
  LM.debug = {couriers: () => [...S.couriers.values()].filter((k) => k.mover)
    .map((k) => ({id: k.id, status: k.status, mode: k.mode, ...k.mover.at(performance.now()), sx: k.sx, sy: k.sy})),
  selected: () => (S.sel ? S.sel.id : ''), frames: () => view.stats};

  LM.loadConfig().then((cfg) => {
    if (cfg.area) { view.setArea(cfg.area); $('city').textContent = cfg.area.name || ''; if (!S.moved) view.fit([]); }
  });
  // Who is signed in, if anyone (a reload keeps the session).
  LM.whoami().then((r) => begin(r.user), (err) => { if (err.status === 401) showLogin(); else LM.fail(err); });
})();
