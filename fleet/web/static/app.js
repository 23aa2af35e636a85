// hashpilot fleet dashboard: live pages fed by Server-Sent Events (no external libraries).
'use strict';

const B = document.body.dataset;
const $ = (s) => document.querySelector(s);
const esc = (s) => String(s == null ? '' : s).replace(/[&<>"']/g,
  (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
const num = (x, d) => (x == null ? '-' : Number(x).toFixed(d == null ? 1 : d));
const age = (s) => (s == null ? '-' : s < 100 ? s.toFixed(0) + 's' : s < 6000 ? (s / 60).toFixed(0) + 'm' : (s / 3600).toFixed(0) + 'h');
window.hp = {snapshots: 0, last: null};

function live(ok, text) {
  const el = $('#live');
  el.textContent = text;
  el.className = 'live ' + (ok ? 'ok' : 'bad');
}

function stream(url, onData) {
  let es = null;
  function open() {
    es = new EventSource(url());
    es.addEventListener('snapshot', (ev) => {
      const d = JSON.parse(ev.data);
      window.hp.snapshots += 1;
      window.hp.last = d;
      onData(d);
      live(true, 'live ' + new Date(d ? d.now_ms : Date.now()).toLocaleTimeString());
      document.body.dataset.live = String(window.hp.snapshots);
    });
    es.onerror = () => live(false, 'reconnecting…');
  }
  open();
  return () => { es.close(); open(); };
}

// -- charts: one series, time on x, drawn on a canvas -------------------------------------------
function chart(canvas, title, points, unit) {
  const g = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height, L = 52, R = 8, T = 20, Bm = 22;
  g.clearRect(0, 0, W, H);
  g.fillStyle = '#161b22'; g.fillRect(0, 0, W, H);
  g.fillStyle = '#c9d1d9'; g.font = '12px sans-serif';
  g.fillText(title + (points.length ? '  ' + num(points[points.length - 1][1], 1) + ' ' + unit : ''), L, 14);
  canvas.dataset.points = String(points.length);
  if (points.length < 1) { g.fillText('collecting…', L, H / 2); return; }
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) x0 -= 60;
  const pad = (y1 - y0) * 0.1 || Math.abs(y1) * 0.05 || 1; y0 -= pad; y1 += pad;
  const X = (x) => L + (x - x0) / (x1 - x0) * (W - L - R), Y = (y) => H - Bm - (y - y0) / (y1 - y0) * (H - T - Bm);
  g.strokeStyle = '#30363d'; g.beginPath(); g.moveTo(L, T); g.lineTo(L, H - Bm); g.lineTo(W - R, H - Bm); g.stroke();
  g.fillStyle = '#8b949e';
  const dec = y1 - y0 < 10 ? 1 : 0;
  g.fillText(num(y1, dec), 4, T + 8); g.fillText(num(y0, dec), 4, H - Bm);
  g.fillText(new Date(x0 * 1000).toLocaleTimeString(), L, H - 6);
  g.fillText(new Date(x1 * 1000).toLocaleTimeString(), W - R - 60, H - 6);
  g.strokeStyle = '#58a6ff'; g.lineWidth = 2; g.beginPath();
  points.forEach((p, i) => (i ? g.lineTo(X(p[0]), Y(p[1])) : g.moveTo(X(p[0]), Y(p[1]))));
  if (points.length === 1) g.arc(X(points[0][0]), Y(points[0][1]), 3, 0, 7);
  g.stroke();
}

function charts(hist) {   // hist: [[ts_s, TH/s, W], ...]
  chart($('#chart-ths'), 'hashrate', hist.map((p) => [p[0], p[1]]), 'TH/s');
  chart($('#chart-w'), 'power', hist.map((p) => [p[0], p[2] / 1000]), 'kW');
  chart($('#chart-jth'), 'efficiency', hist.filter((p) => p[1] > 0).map((p) => [p[0], p[2] / p[1]]), 'J/TH');
}

function alarmRows(list) {
  $('#alarms tbody').innerHTML = list.map((a) =>
    `<tr class="sev-${esc(a.severity)}"><td>${esc(new Date(a.ts_ms).toLocaleTimeString())}</td>` +
    `<td><a href="/rig/${encodeURIComponent(a.site)}/${encodeURIComponent(a.rig)}">${esc(a.site)}/${esc(a.rig)}</a></td>` +
    `<td>${esc(a.event)}</td><td>${esc(a.severity)}</td><td>${esc(a.id)}</td><td>${esc(a.message)}</td></tr>`).join('') ||
    '<tr><td>no alarms</td></tr>';
}

// -- fleet page ---------------------------------------------------------------------------------
function fleetPage() {
  let offset = 0;
  const q = () => '/events/fleet?' + new URLSearchParams({q: $('#filter').value, sort: $('#sort').value,
    rev: $('#rev').checked ? '1' : '0', offset: String(offset), limit: '200'});
  const restart = stream(q, (d) => {
    $('#totals').innerHTML = Object.values(d.totals).map((t) =>
      `<div class="card site" data-site="${esc(t.site)}"><h3>${esc(t.site)}</h3><b class="ths">${num(t.ths)}</b> TH/s` +
      `<br><b class="kw">${num(t.w / 1000, 1)}</b> kW · ${num(t.jth, 2)} J/TH<br>` +
      `<span class="online">${t.online}</span>/${t.rigs} online · ${t.alarms} alarms</div>`).join('');
    $('#count').textContent = `${d.offset + 1}-${d.offset + d.rows.length} of ${d.total}`;
    $('#rigs tbody').innerHTML = d.rows.map((r) =>
      `<tr class="link-${esc(r.link)}"><td><a href="/rig/${encodeURIComponent(r.site)}/${encodeURIComponent(r.rig)}">${esc(r.key)}</a></td>` +
      `<td class="link">${esc(r.link)}</td><td>${age(r.age_s)}</td><td>${esc(r.model || '-')}</td><td>${num(r.ths)}</td>` +
      `<td>${num(r.w, 0)}</td><td>${num(r.jth, 2)}</td><td>${num(r.hot_c)}</td><td>${num(r.fan_pct, 0)}</td>` +
      `<td class="safety-${esc(r.safety)}">${esc(r.safety || '-')}</td><td>${esc(r.tuner || '-')}</td>` +
      `<td>${esc(r.pool || '-')}</td><td class="alarms">${esc(r.alarms.join(', ') || '-')}</td></tr>`).join('');
    const sites = Object.keys(d.history);
    const merged = {};
    sites.forEach((s) => d.history[s].forEach((p) => {
      const k = Math.round(p[0] / 10) * 10; const m = merged[k] || (merged[k] = [k, 0, 0]); m[1] += p[1]; m[2] += p[2];
    }));
    charts(Object.values(merged).sort((a, b) => a[0] - b[0]));
    alarmRows(d.alarms);
  });
  let timer = null;
  const again = () => { clearTimeout(timer); timer = setTimeout(restart, 250); };
  $('#filter').addEventListener('input', () => { offset = 0; again(); });
  $('#sort').addEventListener('change', again);
  $('#rev').addEventListener('change', again);
  $('#next').addEventListener('click', () => { offset += 200; again(); });
  $('#prev').addEventListener('click', () => { offset = Math.max(0, offset - 200); again(); });
}

// -- rig page: per-board per-chip heat maps in chain order --------------------------------------
const METRICS = {temp: ['temp_c', '°C', true], freq: ['freq_mhz', 'MHz', false], err: ['err_pct', '%', true]};
function heatColour(f) {
  const stops = [[0, [40, 70, 200]], [0.35, [40, 170, 90]], [0.65, [230, 200, 40]], [1, [220, 40, 40]]];
  f = Math.max(0, Math.min(1, f));
  for (let i = 1; i < stops.length; i++) {
    if (f <= stops[i][0]) {
      const [f0, c0] = stops[i - 1], [f1, c1] = stops[i], t = (f - f0) / (f1 - f0);
      return `rgb(${c0.map((c, k) => Math.round(c + (c1[k] - c) * t)).join(',')})`;
    }
  }
  return 'rgb(220,40,40)';
}

function heatRange(metric, values, meta) {
  const v = values.filter((x) => x != null);
  let lo = Math.min(...v), hi = Math.max(...v);
  if (metric === 'temp') { lo = 40; hi = (meta && meta.temp_danger_c) || Math.max(hi, 95); }
  if (metric === 'err') { lo = 0; hi = 2; }
  if (!v.length) { lo = 0; hi = 1; }
  if (hi <= lo) hi = lo + 1;
  return [lo, hi];
}

function heatMaps(d, metric) {
  const [key, unit, worse] = METRICS[metric];
  const boards = (d.chips && d.chips.boards) || [];
  const all = [].concat(...boards.map((b) => b[key] || []));
  const [lo, hi] = heatRange(metric, all, d.meta);
  $('#scale').textContent = `scale ${num(lo)} .. ${num(hi)} ${unit}` + (boards.length ? '' : ' · waiting for a chips snapshot');
  const host = $('#boards');
  if (host.children.length !== boards.length) {
    host.innerHTML = boards.map((b) => `<div class="board"><h3>board ${esc(b.index)}</h3><canvas class="chipmap"></canvas></div>`).join('');
  }
  boards.forEach((b, n) => {
    const vals = b[key] || [], bad = new Set((b.abnormal || []).map((p) => p[0]));
    const cols = Math.min(36, vals.length), rows = Math.ceil(vals.length / cols), S = 18;
    const c = host.children[n].querySelector('canvas');
    c.width = cols * S; c.height = rows * S;
    c.dataset.chips = String(vals.length); c.dataset.board = String(b.index);
    const g = c.getContext('2d');
    vals.forEach((v, i) => {
      const x = (i % cols) * S, y = Math.floor(i / cols) * S;
      let f = v == null ? null : (v - lo) / (hi - lo);
      if (f != null && !worse) f = 1 - f;
      g.fillStyle = f == null ? '#3a3f47' : heatColour(f);
      g.fillRect(x + 1, y + 1, S - 2, S - 2);
      if (bad.has(i)) { g.strokeStyle = '#fff'; g.beginPath(); g.moveTo(x + 4, y + 4); g.lineTo(x + S - 4, y + S - 4); g.stroke(); }
    });
    c.title = `board ${b.index}: ${vals.length} chips, ${metric} ${num(Math.min(...vals.filter((x) => x != null)))}..${num(Math.max(...vals.filter((x) => x != null)))} ${unit}`;
    c.onmousemove = (ev) => {
      const i = Math.floor(ev.offsetY / S) * cols + Math.floor(ev.offsetX / S);
      if (i < vals.length) c.title = `board ${b.index} chip ${i}: ${num(vals[i], 2)} ${unit}`;
    };
  });
}

function rigPage() {
  let metric = 'temp', last = null;
  document.querySelectorAll('[data-metric]').forEach((btn) => btn.addEventListener('click', () => {
    metric = btn.dataset.metric;
    document.querySelectorAll('[data-metric]').forEach((b) => b.classList.toggle('on', b === btn));
    if (last) heatMaps(last, metric);
  }));
  const url = () => `/events/rig/${encodeURIComponent(B.site)}/${encodeURIComponent(B.rig)}`;
  stream(url, (d) => {
    if (!d) { $('#rig-summary').textContent = 'unknown rig (no message from it yet)'; return; }
    last = d;
    const r = d.row, tel = d.telemetry || {};
    $('#rig-summary').innerHTML =
      `<div class="card"><h3>${esc(r.model || '?')}</h3><span class="link">${esc(r.link)}</span> · age ${age(r.age_s)}</div>` +
      `<div class="card"><b class="ths">${num(r.ths)}</b> TH/s<br><b>${num(r.w, 0)}</b> W · ${num(r.jth, 2)} J/TH</div>` +
      `<div class="card">hottest <b>${num(r.hot_c)}</b> °C<br>fans ${esc((tel.fan_duty_pct || []).map((x) => num(x, 0)).join(', '))} %</div>` +
      `<div class="card">safety <b>${esc(r.safety || '-')}</b><br>tuner ${esc(r.tuner || '-')} ${r.tuner_pct == null ? '' : num(r.tuner_pct, 0) + '%'}` +
      `${r.pool ? '<br>pool ' + esc(r.pool) : ''}</div>`;
    $('#board-table tbody').innerHTML = (tel.boards || []).map((b) =>
      `<tr><td>${esc(b.index)}</td><td>${num(b.hashrate_ghs, 0)}</td><td>${num(b.temp_max_c)}</td><td>${num(b.freq_avg_mhz)}</td>` +
      `<td>${num(b.voltage_mv, 0)}</td><td>${esc(b.chips_ok == null ? '-' : b.chips_ok)}</td><td>${num(b.err_pct, 2)}</td>` +
      `<td>${esc(b.safety || '-')}${b.safety_reason ? ' (' + esc(b.safety_reason) + ')' : ''}</td></tr>`).join('');
    heatMaps(d, metric);
    charts(d.history);
    alarmRows(d.alarms);
    if ($('#cmd-out')) {
      $('#cmd-out').innerHTML = (d.results || []).slice().reverse().map((x) =>
        `<div class="${x.ok ? 'ok' : 'bad'}">${esc(x.op || '')} ${esc(x.id)}: ${x.ok ? 'ok' : 'refused: ' + esc(x.error)}</div>`).join('');
    }
  });
  document.querySelectorAll('#commands [data-op]').forEach((btn) => btn.addEventListener('click', async () => {
    const op = btn.dataset.op;
    const args = op === 'set_power_target' ? {w: Number($('#cmd-w').value)} : JSON.parse(btn.dataset.args || '{}');
    const res = await fetch('/api/cmd', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': B.csrf},
      body: JSON.stringify({site: B.site, rig: B.rig, op, args})});
    const body = await res.json();
    $('#cmd-out').insertAdjacentHTML('afterbegin', `<div>${res.ok ? 'sent ' + esc(op) + ' ' + esc(body.id) : 'not sent: ' + esc(body.error)}</div>`);
  }));
}

function alarmsPage() {
  stream(() => '/events/fleet?limit=1', (d) => alarmRows(d.alarms));
}

({fleet: fleetPage, rig: rigPage, alarms: alarmsPage})[B.page]();
