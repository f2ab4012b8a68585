// track.js: the customer's tracking page, /track/{task id}. The task's customer sees it with their
// session; anyone else needs the share link, whose token travels in the URL fragment (#shareToken=...) so
// that it never reaches a server log or a Referer header, and is passed to the API as ?shareToken=.
'use strict';
(() => {
  const {$, el, api} = LM;
  const id = location.pathname.split('/').pop();
  const token = new URLSearchParams(location.hash.slice(1)).get('shareToken') || '';
  const q = token ? '?shareToken=' + encodeURIComponent(token) : '';
  const HEAD = {PENDING: 'Finding a courier for you', OFFERED: 'Finding a courier for you',
    ASSIGNED: 'A courier is on the way to pick up your parcel', PICKED_UP: 'Your parcel is on its way',
    DELIVERED: 'Delivered', CANCELLED: 'This delivery was cancelled', FAILED: 'The delivery did not succeed',
    UNASSIGNABLE: 'No courier could take this delivery'};
  const STEPS = [['Ordered', ['PENDING', 'OFFERED']], ['Courier assigned', ['ASSIGNED']],
    ['Picked up', ['PICKED_UP']], ['Delivered', ['DELIVERED']]];
  let task = null, eta = null, courier = null, moved = false, es = null;

  function render() {
    if (!task) return;
    const st = LM.taskState(task);
    $('task-id').textContent = '· ' + LM.shortId(task.id);
    $('headline').textContent = HEAD[st] || st;
    $('headline').dataset.state = st;
    const now = STEPS.findIndex(([, sts]) => sts.includes(st));
    $('steps').replaceChildren(...STEPS.map(([name], i) => el('li', {className: i < now || st === 'DELIVERED' ? 'done' : i === now ? 'now' : ''}, name)));
    $('eta').textContent = etaText(st);
    const when = (ts) => (ts ? new Date(ts).toLocaleString([], {weekday: 'short', hour: '2-digit', minute: '2-digit'}) : null);
    $('facts').replaceChildren(...[['From', task.pickup.address], ['To', task.dropoff.address],
      ['Ordered', when(task.createTime)], ['Picked up', when(task.pickupTime)], ['Delivered', when(task.deliverTime)]]
      .filter((p) => p[1]).flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    view.redraw();
  }

  // etaText says when the parcel arrives, as a countdown and a clock time, from the live estimate.
  function etaText(st) {
    if (!eta || !['ASSIGNED', 'PICKED_UP'].includes(st)) return '';
    const drop = LM.ms(eta.dropoffTime), pick = LM.ms(eta.pickupTime), now = Date.now();
    const at = (t) => new Date(t).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
    let s = drop ? 'Arriving in about ' + LM.dur(Math.max(0, drop - now)) + ' · around ' + at(drop) : '';
    if (st === 'ASSIGNED' && pick) s = 'Pickup in about ' + LM.dur(Math.max(0, pick - now)) + (s ? ' · ' + s.toLowerCase() : '');
    return s + (eta.degraded ? ' (rough estimate)' : '');
  }

  // draw: the pickup (hollow square), the destination (filled diamond, "you"), the courier (a moving dot
  // with a ring) and the line still to travel.
  function draw(c, v, now) {
    if (!task) return false;
    const p = v.toScreen(task._p), d = v.toScreen(task._d);
    const st = LM.taskState(task);
    c.strokeStyle = '#94a3b8'; c.lineWidth = 2; c.setLineDash([5, 5]);
    c.beginPath(); c.moveTo(p.x, p.y); c.lineTo(d.x, d.y); c.stroke(); c.setLineDash([]);
    c.strokeStyle = '#1d4ed8'; c.lineWidth = 2.5; c.strokeRect(p.x - 6, p.y - 6, 12, 12);
    c.fillStyle = '#111827'; c.beginPath(); c.moveTo(d.x, d.y - 9); c.lineTo(d.x + 7, d.y); c.lineTo(d.x, d.y + 9); c.lineTo(d.x - 7, d.y); c.fill();
    c.font = '600 14px system-ui, sans-serif'; c.fillText('you', d.x + 10, d.y + 5);
    if (courier && ['ASSIGNED', 'PICKED_UP'].includes(st)) {
      const k = v.toScreen(courier.at(now)), to = st === 'PICKED_UP' ? d : p;
      c.strokeStyle = '#c2410c'; c.lineWidth = 2; c.beginPath(); c.moveTo(k.x, k.y); c.lineTo(to.x, to.y); c.stroke();
      c.fillStyle = '#c2410c'; c.beginPath(); c.arc(k.x, k.y, 8, 0, 2 * Math.PI); c.fill();
      c.strokeStyle = '#fff'; c.lineWidth = 2; c.beginPath(); c.arc(k.x, k.y, 8, 0, 2 * Math.PI); c.stroke();
      c.fillStyle = '#111827'; c.fillText('courier', k.x + 11, k.y - 8);
      return courier.moving(now);
    }
    return false;
  }

  function frame() {
    if (moved || !task) return;
    const pts = [task._p, task._d];
    if (courier) pts.push(courier.to);
    view.fit(pts, 36);
  }

  function onUpdate(u) {
    if (u.task) {
      task = u.task;
      task._p = LM.project(task.pickup.location.latitude || 0, task.pickup.location.longitude || 0);
      task._d = LM.project(task.dropoff.location.latitude || 0, task.dropoff.location.longitude || 0);
    }
    if (u.eta) eta = u.eta;
    const fix = u.courierLocation;
    if (fix && fix.location) {
      const p = LM.project(fix.location.latitude || 0, fix.location.longitude || 0);
      const now = performance.now();
      if (!courier) courier = new LM.Mover(p); else courier.set(p, now, LM.ms(fix.recordedAt) - courier.fixAt);
      courier.fixAt = LM.ms(fix.recordedAt);
    }
    frame();
    render();
  }

  function connect() {
    es = LM.stream('/v1/tasks/' + id + '/events' + q, {
      task: onUpdate,
      end: () => { es.close(); LM.showConn($('conn'), 'final'); $('conn').textContent = '✓ final'; },
      problem: (e, code) => { // 404: the share link expired while the page was open
        if (code === 404) $('headline').textContent = 'This tracking link has expired.';
      },
    }, (s, detail) => LM.showConn($('conn'), s, detail));
  }

  async function start() {
    if (!token && !LM.signedIn()) { $('login').hidden = false; return; } // neither a link nor a session
    try {
      onUpdate({task: await api('GET', '/v1/tasks/' + id + q)});
      connect();
    } catch (err) {
      if (err.status === 401 && !token) { $('login').hidden = false; return; }
      $('headline').textContent = err.status === 404 ? 'This tracking link is not valid or has expired.' : 'We cannot show this delivery right now.';
      $('conn').hidden = true;
      if (err.status !== 404) LM.fail(err);
    }
  }

  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await LM.login($('login-email').value, $('login-password').value);
      $('login').hidden = true;
      start();
    } catch (err) { $('login-error').textContent = err.status === 401 ? 'Wrong email or password.' : err.message; }
  });

  const view = new LM.MapView($('map'), draw, null);
  $('map').addEventListener('pointerdown', () => { moved = true; });
  $('map').addEventListener('wheel', () => { moved = true; }, {passive: true});
  setInterval(render, 15000); // the countdown moves on between updates
  start();
})();
