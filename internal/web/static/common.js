// common.js: what the dashboard and the tracking page share. No framework, no dependency: a few helpers
// over the DOM, the REST API with the browser session, Server-Sent Events with reconnection, and a map
// drawn on a canvas. Everything hangs off one global, LM, because the pages load plain scripts (the CSP
// allows scripts from this origin only, and there is no build step to bundle modules).
'use strict';
const LM = (() => {
  const $ = (id) => document.getElementById(id);

  // el builds an element: el('td', {className: 'x', onclick: f}, 'text', child). Text is always set as
  // text, never parsed as HTML, so data from the API cannot inject markup.
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k in e) e[k] = v;
      else e.setAttribute(k, v);
    }
    for (const c of children.flat()) if (c != null && c !== false) e.append(c);
    return e;
  }

  function cookie(name) {
    const m = document.cookie.match(new RegExp('(?:^|; )' + name + '=([^;]*)'));
    return m ? decodeURIComponent(m[1]) : '';
  }

  // ApiError carries what a person needs to report a problem: the message and the request id.
  class ApiError extends Error {
    constructor(status, body, requestId) {
      const e = (body && body.error) || {};
      // A 400 names the fields at fault (google.rpc.BadRequest): add those the message does not say.
      const msg = e.message || 'the server answered ' + status;
      const more = (e.details || []).flatMap((d) => d.fieldViolations || []).map((v) => v.description)
        .filter((d) => d && !msg.includes(d));
      super(msg + (more.length ? ': ' + more.join('; ') : ''));
      this.status = status;
      this.code = e.status || '';
      this.requestId = requestId || '';
    }
  }

  let onUnauthorized = null; // set by the page: shows the login form
  let refreshing = null; // one refresh at a time, shared by the calls that need it

  // api calls the REST API with the session cookie. State-changing calls carry the CSRF header. A 401
  // tries one token refresh and retries; if that fails too the page is asked to log in again. A 429 (too
  // many requests) or 503 (service unavailable) is tried again: see retryWait.
  async function api(method, path, body, retried) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call(method, path, body, retried);
      } catch (err) {
        const wait = retryWait(err, attempt, path);
        if (wait < 0) throw err;
        const ticket = busy.add(err, wait, attempt);
        try { await new Promise((resolve) => setTimeout(resolve, wait)); } finally { busy.remove(ticket); }
      }
    }
  }

  // A 429 or 503 is tried again up to RETRIES times: after the answer's Retry-After (whole seconds; up to
  // a fifth longer) when it has one, else after 1, 2, 4 and 8 s (each up to a fifth shorter), so that the
  // calls refused together do not all come back at once. A Retry-After over MAX_RETRY_AFTER seconds (a login locked for minutes) is not waited for:
  // the error says how long to wait. The token refresh is never repeated: its refresh token is used once.
  const RETRIES = 4, MAX_RETRY_AFTER = 30;
  function retryWait(err, attempt, path) {
    if (!(err instanceof ApiError) || (err.status !== 429 && err.status !== 503) || path === '/v1/session/refresh') return -1;
    const after = err.retryAfter;
    if (after > MAX_RETRY_AFTER) {
      err.message += ' (wait ' + dur(after * 1000) + ')';
      return -1;
    }
    if (attempt > RETRIES) {
      err.message += ' (tried ' + attempt + ' times)';
      return -1;
    }
    return after >= 0 ? after * 1000 * (1 + 0.2 * Math.random()) : 1000 * 2 ** (attempt - 1) * (1 - 0.2 * Math.random());
  }

  // busy shows, while calls wait to be tried again, what the newest one waits for in the page's #busy
  // element (a status line: a screen reader reads it when it changes), and hides it when none waits.
  const busy = (() => {
    const waiting = new Map();
    let next = 0;
    const show = () => {
      const node = $('busy');
      if (!node) return;
      const last = [...waiting.values()].pop();
      node.hidden = !last;
      node.textContent = last || '';
    };
    return {
      add(err, wait, attempt) {
        const why = err.status === 429 ? 'The server is busy' : 'The server is unavailable';
        waiting.set(++next, why + ' (' + err.status + ': ' + err.message + '). Trying again in ' +
          Math.max(1, Math.round(wait / 1000)) + ' s (retry ' + attempt + ' of ' + RETRIES + ').');
        show();
        return next;
      },
      remove(ticket) { waiting.delete(ticket); show(); },
    };
  })();

  async function call(method, path, body, retried) {
    const headers = {Accept: 'application/json'};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET') headers['X-CSRF-Token'] = cookie('lm_csrf');
    let res;
    try {
      res = await fetch(path, {method, headers, credentials: 'same-origin',
        body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (err) {
      throw new ApiError(0, {error: {message: 'the server cannot be reached (' + err.message + ')'}});
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: keep the status */ }
    if (res.status === 401 && !retried && !path.startsWith('/v1/session')) {
      if (await refresh()) return api(method, path, body, true);
      if (onUnauthorized) onUnauthorized();
    }
    if (!res.ok) {
      const err = new ApiError(res.status, data, res.headers.get('X-Request-Id'));
      const after = res.headers.get('Retry-After');
      err.retryAfter = after && /^\d+$/.test(after) ? Number(after) : -1;
      throw err;
    }
    return data;
  }

  function refresh() {
    if (!cookie('lm_csrf')) return Promise.resolve(false); // never logged in here: nothing to refresh
    refreshing = refreshing || api('POST', '/v1/session/refresh', {}).then(() => true, () => false)
      .finally(() => { refreshing = null; });
    return refreshing;
  }

  const login = (email, password) => api('POST', '/v1/session', {email, password});
  const logout = () => api('DELETE', '/v1/session');

  // toast shows an error in plain words, with the request id for support; it fades after 8 s.
  const toasted = []; // the last few, for the console and the browser test
  function toast(msg, requestId) {
    toasted.push(msg + (requestId ? ' (request id ' + requestId + ')' : ''));
    if (toasted.length > 10) toasted.shift();
    const t = el('div', {className: 'toast', role: 'alert'}, msg,
      requestId ? el('small', {}, 'request id ' + requestId) : null);
    $('toasts').append(t);
    setTimeout(() => t.remove(), 8000);
  }
  const fail = (err) => toast(err.message, err.requestId);

  // signedIn says whether this browser holds a session: the lm_csrf cookie, readable by the page, lives
  // as long as the session's refresh token. Without it nobody is signed in, and the page shows its login
  // form without asking the server (whose 401 the browser would log in the console as a failed request).
  const signedIn = () => !!cookie('lm_csrf');

  // whoami asks who is signed in (a reloaded page cannot read its HttpOnly token), refreshing an expired
  // session once; it rejects with status 401 when nobody is.
  async function whoami() {
    if (!signedIn()) throw new ApiError(401, {error: {message: 'not signed in'}});
    try { return await api('GET', '/v1/session'); } catch (err) {
      if (err.status === 401 && await refresh()) return api('GET', '/v1/session');
      throw err;
    }
  }

  // stream opens an EventSource on url and calls handlers[event](data, id) for each event named in
  // handlers. EventSource reconnects by itself after a dropped connection, sending Last-Event-ID; after a
  // refused one (a non-200 answer: expired session, too many streams) it gives up, so we refresh the
  // session and reopen it ourselves with lastEventId in the query. A `problem` event with a 4xx code will
  // not heal by reconnecting: 401 refreshes the session and reopens, others end the stream. state(s)
  // reports 'live', 'reconnecting', 'offline' or 'closed' so the page always says where it stands.
  //
  // EventSource does not say why a stream was refused, so the server is asked with a plain request (which
  // is aborted at once when it would open): a refusal other than 401, such as 429 when the user has too
  // many event streams open (one per dashboard tab) or 503, shows as 'refused' with the server's message
  // in a toast (once per message) and on the state's tooltip, and is retried like the rest.
  function stream(url, handlers, state) {
    let es = null, lastId = '', backoff = 1000, closed = false, timer = 0, told = '';
    const target = () => (lastId ? url + (url.includes('?') ? '&' : '?') + 'lastEventId=' + lastId : url);
    const why = async () => {
      const ctl = new AbortController();
      try {
        const res = await fetch(target(), {headers: {Accept: 'text/event-stream'}, credentials: 'same-origin', signal: ctl.signal});
        if (res.ok || res.status === 401 || closed) { ctl.abort(); return; }
        let msg = '';
        try { msg = ((await res.json()).error || {}).message || ''; } catch { /* not JSON */ }
        const text = 'Live updates refused (' + res.status + '): ' + (msg || 'the server answered ' + res.status) + '. Retrying.';
        if (!es || es.readyState !== EventSource.OPEN) state('refused', text);
        if (text !== told) { told = text; toast(text, res.headers.get('X-Request-Id')); }
      } catch { /* the server cannot be reached: 'offline' says so */ }
    };
    const retry = () => {
      es.close();
      state('offline');
      timer = setTimeout(async () => { await refresh(); if (!closed) open(); }, backoff);
      backoff = Math.min(backoff * 2, 30000);
      why();
    };
    const open = () => {
      es = new EventSource(target());
      es.onopen = () => { backoff = 1000; told = ''; state('live'); };
      es.onerror = () => {
        if (closed) return;
        if (es.readyState === EventSource.CONNECTING) state('reconnecting'); else retry();
      };
      const on = (name, fn) => es.addEventListener(name, (ev) => {
        if (ev.lastEventId) lastId = ev.lastEventId;
        let data;
        try { data = JSON.parse(ev.data); } catch { return; }
        fn(data, ev.lastEventId);
      });
      for (const [name, fn] of Object.entries(handlers)) if (name !== 'problem') on(name, fn);
      on('problem', (data) => {
        const code = (data.error && data.error.code) || 0;
        if (handlers.problem) handlers.problem(data, code);
        if (code === 401) retry();
        else if (code >= 400 && code < 500) { closed = true; es.close(); state('closed'); }
      });
    };
    open();
    return {close() { closed = true; clearTimeout(timer); if (es) es.close(); }};
  }

  // showConn renders a connection state into an element whose data-state the style sheet colours.
  // detail, when given, is the reason, shown on hover.
  function showConn(node, s, detail) {
    node.dataset.state = s;
    node.title = detail || '';
    node.textContent = {live: '● live', reconnecting: '◌ reconnecting…', offline: '○ offline — retrying',
      refused: '○ refused — retrying', connecting: '◌ connecting…', closed: '○ closed'}[s] || s;
  }

  // ---- names and numbers -------------------------------------------------------------------------
  const strip = (v, prefix) => (v || '').replace(prefix, '');
  const taskState = (t) => strip(t.state, 'TASK_STATE_') || 'UNSPECIFIED';
  const courierStatus = (c) => strip(c.status, 'COURIER_STATUS_') || 'UNSPECIFIED';
  // Ids are UUIDv7, time-ordered: their first digits are alike, their last ones tell tasks apart.
  const shortId = (id) => (id || '').slice(-8);
  const ms = (ts) => (ts ? Date.parse(ts) : NaN);
  function dur(msec) { // "45 s", "7 min", "2 h 5 min"
    if (!(msec >= 0)) return '–';
    const s = Math.round(msec / 1000);
    if (s < 60) return s + ' s';
    const m = Math.round(s / 60);
    return m < 60 ? m + ' min' : Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }
  const clock = (ts) => (ts ? new Date(ts).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', second: '2-digit'}) : '–');
  const seconds = (d) => (d ? parseFloat(d) : NaN); // protobuf Duration JSON: "12.5s"

  // ---- the map -----------------------------------------------------------------------------------
  // Positions are kept in Web Mercator meters (x east, y north); the view is a centre in those units and
  // a scale k in pixels per unit. A ground distance is a Mercator distance times cos(latitude).
  const R = 6378137;
  const project = (lat, lng) => ({x: R * lng * Math.PI / 180,
    y: R * Math.log(Math.tan(Math.PI / 4 + lat * Math.PI / 360))});
  const unproject = (p) => ({lat: (2 * Math.atan(Math.exp(p.y / R)) - Math.PI / 2) * 180 / Math.PI,
    lng: p.x / R * 180 / Math.PI});
  // groundMeters is the distance on the ground between two points in world units (near each other).
  const groundMeters = (a, b) => Math.hypot(a.x - b.x, a.y - b.y) * Math.cos(unproject({x: (a.x + b.x) / 2, y: (a.y + b.y) / 2}).lat * Math.PI / 180);
  const nice = (v) => { // the largest 1, 2 or 5 × 10^n not above v
    const e = Math.pow(10, Math.floor(Math.log10(v)));
    return [5, 2, 1].map((f) => f * e).find((n) => n <= v) || e;
  };

  // MapView draws on canvas with draw(ctx, view, now) once per animation frame while something changes
  // or moves. Drag pans, the wheel zooms around the pointer, click(p, ev) gets clicks that were not drags.
  class MapView {
    constructor(canvas, draw, click) {
      this.canvas = canvas; this.ctx = canvas.getContext('2d');
      this.draw = draw; this.click = click;
      this.cx = 0; this.cy = 0; this.k = 0.01; this.area = null;
      this.w = 0; this.h = 0; this.pending = false;
      this.stats = {frames: 0, ms: 0, max: 0};
      new ResizeObserver(() => this.resize()).observe(canvas);
      let drag = null;
      canvas.addEventListener('pointerdown', (e) => {
        drag = {x: e.clientX, y: e.clientY, cx: this.cx, cy: this.cy, moved: false};
        canvas.setPointerCapture(e.pointerId);
      });
      canvas.addEventListener('pointermove', (e) => {
        if (!drag) return;
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
        if (drag.moved) { this.cx = drag.cx - dx / this.k; this.cy = drag.cy + dy / this.k; this.redraw(); }
      });
      canvas.addEventListener('pointerup', (e) => {
        const d = drag; drag = null;
        if (d && !d.moved && this.click) this.click(this.toWorld(e.offsetX, e.offsetY), e);
      });
      canvas.addEventListener('wheel', (e) => {
        e.preventDefault();
        const before = this.toWorld(e.offsetX, e.offsetY);
        this.k = Math.min(50, Math.max(1e-4, this.k * Math.exp(-e.deltaY * 0.0015)));
        const after = this.toWorld(e.offsetX, e.offsetY);
        this.cx += before.x - after.x; this.cy += before.y - after.y; // the point under the pointer stays
        this.redraw();
      }, {passive: false});
    }
    resize() {
      const dpr = window.devicePixelRatio || 1, r = this.canvas.getBoundingClientRect();
      this.w = r.width; this.h = r.height;
      this.canvas.width = Math.round(r.width * dpr); this.canvas.height = Math.round(r.height * dpr);
      this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      this.redraw();
    }
    toScreen(p) { return {x: (p.x - this.cx) * this.k + this.w / 2, y: (this.cy - p.y) * this.k + this.h / 2}; }
    toWorld(sx, sy) { return {x: this.cx + (sx - this.w / 2) / this.k, y: this.cy - (sy - this.h / 2) / this.k}; }
    // fit frames the points (world units) with a margin; one point or none frames the area instead.
    fit(points, margin = 40) {
      if (points.length < 2 && this.area) points = points.concat(this.areaBox());
      if (!points.length) return;
      const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
      const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
      this.cx = (x0 + x1) / 2; this.cy = (y0 + y1) / 2;
      const w = Math.max(this.w - 2 * margin, 50), h = Math.max(this.h - 2 * margin, 50);
      this.k = Math.min(w / Math.max(x1 - x0, 200), h / Math.max(y1 - y0, 200));
      this.redraw();
    }
    // zoom scales the view by f around its centre.
    zoom(f) { this.k = Math.min(50, Math.max(1e-4, this.k * f)); this.redraw(); }
    setArea(a) { this.area = a ? {...a, c: project(a.latitude, a.longitude)} : null; }
    areaBox() {
      const a = this.area, r = a.radiusMeters / Math.cos(a.latitude * Math.PI / 180);
      return [{x: a.c.x - r, y: a.c.y - r}, {x: a.c.x + r, y: a.c.y + r}];
    }
    // redraw asks for one frame; animate() asks for frames until draw returns false (nothing moving).
    redraw() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame((now) => {
        this.pending = false;
        this.frame(now);
      });
    }
    frame(now) {
      const c = this.ctx, t0 = performance.now();
      c.clearRect(0, 0, this.w, this.h);
      this.background(c);
      if (this.draw(c, this, now)) this.redraw();
      this.scaleBar(c);
      const s = this.stats, ms = performance.now() - t0; // frame cost, for LM.debug and measurements
      s.frames++; s.ms += ms; s.max = Math.max(s.max, ms);
    }
    // metersPerPixel on the ground at the view's centre latitude.
    metersPerPixel() { return Math.cos(unproject({x: this.cx, y: this.cy}).lat * Math.PI / 180) / this.k; }
    background(c) {
      // A light grid every "nice" ground distance, and the city outline with its name.
      const mpp = this.metersPerPixel(), step = nice(mpp * 120) / (mpp * this.k); // world units
      const tl = this.toWorld(0, 0), br = this.toWorld(this.w, this.h);
      c.strokeStyle = '#e6e9ef'; c.lineWidth = 1; c.beginPath();
      for (let x = Math.floor(tl.x / step) * step; x < br.x; x += step) {
        const s = this.toScreen({x, y: 0}).x; c.moveTo(s, 0); c.lineTo(s, this.h);
      }
      for (let y = Math.floor(br.y / step) * step; y < tl.y; y += step) {
        const s = this.toScreen({x: 0, y}).y; c.moveTo(0, s); c.lineTo(this.w, s);
      }
      c.stroke();
      if (this.area) {
        const a = this.area, p = this.toScreen(a.c);
        const r = a.radiusMeters / Math.cos(a.latitude * Math.PI / 180) * this.k;
        c.strokeStyle = '#94a3b8'; c.setLineDash([6, 4]); c.lineWidth = 1.5;
        c.beginPath(); c.arc(p.x, p.y, r, 0, 2 * Math.PI); c.stroke(); c.setLineDash([]);
        if (a.name) { c.fillStyle = '#64748b'; c.font = '600 14px system-ui, sans-serif'; c.fillText(a.name, p.x - r * 0.7, p.y - r * 0.72); }
      }
    }
    scaleBar(c) {
      const mpp = this.metersPerPixel(), meters = nice(mpp * 120), px = meters / mpp;
      const x = 16, y = this.h - 18;
      c.fillStyle = 'rgba(255,255,255,.85)'; c.fillRect(x - 6, y - 20, px + 12, 28);
      c.strokeStyle = '#1f2937'; c.lineWidth = 2;
      c.beginPath(); c.moveTo(x, y - 6); c.lineTo(x, y); c.lineTo(x + px, y); c.lineTo(x + px, y - 6); c.stroke();
      c.fillStyle = '#1f2937'; c.font = '14px system-ui, sans-serif';
      c.fillText(meters >= 1000 ? meters / 1000 + ' km' : meters + ' m', x + 4, y - 6);
    }
  }

  // Mover interpolates a marker between location fixes: each new fix starts a glide from where the
  // marker is drawn now to the fix, lasting as long as the gap between fixes (bounded), so markers move
  // continuously instead of jumping.
  class Mover {
    constructor(p) { this.from = p; this.to = p; this.t0 = 0; this.len = 1; }
    set(p, now, gapMs) {
      this.from = this.at(now); this.to = p; this.t0 = now;
      this.len = Math.min(Math.max(gapMs || 1000, 250), 5000);
    }
    at(now) {
      const f = Math.min(1, (now - this.t0) / this.len);
      return {x: this.from.x + (this.to.x - this.from.x) * f, y: this.from.y + (this.to.y - this.from.y) * f};
    }
    moving(now) { return now - this.t0 < this.len; }
  }

  async function loadConfig() {
    try { return await (await fetch('/ui/config.json')).json(); } catch { return {}; }
  }

  return {$, el, api, retryWait, toasted, ApiError, login, logout, signedIn, whoami, toast, fail, stream, showConn, taskState, courierStatus,
    shortId, ms, dur, clock, seconds, project, unproject, groundMeters, MapView, Mover, loadConfig,
    set onUnauthorized(f) { onUnauthorized = f; }};
})();
