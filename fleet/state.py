"""Fleet state for the operator views: rigs, boards, chips and alarms built from decoded messages.

`FleetState.feed(topic, payload)` decodes with `mqtt_schema.consumer` and applies; `apply(topic,
decoded)` takes an already decoded message (an ingest path that decodes elsewhere). One lock
guards everything; readers take `rows()`, `site_totals()`, `rig_detail()` snapshots (plain dicts)
so a view never holds the lock while it draws.
"""

import array
import collections
import threading
import time

from mqtt_schema import consumer, topics

SAFETY_ORDER = ('ok', 'normal', 'hot', 'throttled', 'off', 'fault')
NORMAL = (None, 'ok', 'normal', 'running')   # the agent reports 'normal'; the schema's example 'ok'
HIST_STEP_S = 60.0       # one history point per rig per minute
HIST_POINTS = 360        # six hours
SITE_STEP_S = 10.0
SITE_POINTS = 2160       # six hours of site totals
RESULTS_KEPT = 64
ALARM_LOG = 2000


class Series:
    """Fixed-length time series in three float arrays (compact for thousands of rigs)."""

    __slots__ = ('ts', 'a', 'b', 'maxlen')

    def __init__(self, maxlen):
        self.ts = array.array('d')
        self.a = array.array('f')
        self.b = array.array('f')
        self.maxlen = maxlen

    def add(self, ts_s, a, b):
        self.ts.append(ts_s)
        self.a.append(a)
        self.b.append(b)
        if len(self.ts) > self.maxlen + self.maxlen // 4:   # trim in blocks, not per point
            cut = len(self.ts) - self.maxlen
            del self.ts[:cut]
            del self.a[:cut]
            del self.b[:cut]

    def last_ts(self):
        return self.ts[-1] if self.ts else None

    def points(self, since_s=None):
        out = []
        for i in range(len(self.ts)):
            if since_s is None or self.ts[i] >= since_s:
                out.append((self.ts[i], self.a[i], self.b[i]))
        return out


class Rig:
    __slots__ = ('site', 'rig', 'online', 'boot_id', 'model', 'meta', 'tel', 'chips', 'alarms',
                 'results', 'last_rx_s', 'tel_rx_s', 'row', 'hist', 'seen')

    def __init__(self, site, rig):
        self.site = site
        self.rig = rig
        self.online = None          # None until a status message: unknown
        self.boot_id = None
        self.model = None
        self.meta = None
        self.tel = None
        self.chips = None
        self.alarms = {}            # active: id -> decoded alarm
        self.results = collections.OrderedDict()   # command id -> decoded cmd/result
        self.last_rx_s = None
        self.tel_rx_s = None
        self.row = None
        self.hist = Series(HIST_POINTS)   # hashrate TH/s, power W
        self.seen = {}              # kind -> (boot_id, last seq) for duplicate drops


def _worst_safety(boards):
    worst = None
    for b in boards or ():
        s = b.get('safety')
        if s is None:
            continue
        rank = max(0, SAFETY_ORDER.index(s) - 1) if s in SAFETY_ORDER else len(SAFETY_ORDER)
        if worst is None or rank > worst[0]:
            worst = (rank, s)
    return worst[1] if worst else None


def _short_url(url):
    url = str(url or '')
    if '://' in url:
        url = url.split('://', 1)[1]
    return url.split('/')[0]


def pool_text(tel):
    """Pool state when telemetry carries it (the work path's `pools`), None when absent:
    the pool mined on now (or the first), as 'state host'."""
    pools = tel.get('pools') if tel else None
    if isinstance(pools, list) and pools:
        maps = [p for p in pools if isinstance(p, dict)]
        if not maps:
            return None
        cur = next((p for p in maps if p.get('connected')), maps[0])
        return ('%s %s' % (cur.get('state') or '?', _short_url(cur.get('url')))).strip()
    pool = tel.get('pool') if tel else None
    if pool is None:
        return None
    if isinstance(pool, dict):
        return str(pool.get('state') or pool.get('url') or 'yes')
    return str(pool)


def _num(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def rig_row(r):
    """The per-rig summary every view shows (no age: that depends on when it is drawn)."""
    tel = r.tel or {}
    boards = tel.get('boards') or []
    temps = [b.get('temp_max_c') for b in boards if _num(b.get('temp_max_c')) is not None]
    fans = [x for x in (tel.get('fan_duty_pct') or []) if _num(x) is not None]
    hr = _num(tel.get('hashrate_ghs'))
    p = _num(tel.get('power_w'))
    jth = _num(tel.get('j_per_th'))
    if jth is None and hr and p is not None:
        jth = p / (hr / 1000.0)
    tuner = tel.get('tuner') or {}
    safety = _worst_safety(boards)
    state = tel.get('state')
    if state not in NORMAL and safety in NORMAL:
        safety = state
    return {'key': r.site + '/' + r.rig, 'site': r.site, 'rig': r.rig, 'model': r.model,
            'ths': None if hr is None else hr / 1000.0, 'w': p, 'jth': jth,
            'hot_c': max(temps) if temps else None, 'fan_pct': max(fans) if fans else None,
            'safety': safety, 'state': state, 'tuner': tuner.get('state'),
            'tuner_pct': tuner.get('progress_pct'), 'pool': pool_text(tel),
            'boards': len(boards)}


def _alarm_entry(site, rig, a):
    return {'ts_ms': a.get('ts_ms'), 'site': site, 'rig': rig, 'id': a.get('id'),
            'event': a.get('event'), 'severity': a.get('severity'), 'message': a.get('message'),
            'board': a.get('board'), 'historical': bool(a.get('historical'))}


class FleetState:
    def __init__(self, site=None, stale_s=35.0, clock=time.time):
        self.site = site            # only this site when set
        self.stale_s = stale_s      # no telemetry for this long: shown 'stale'
        self.clock = clock
        self.lock = threading.Lock()
        self.rigs = {}
        self.alarm_log = collections.deque(maxlen=ALARM_LOG)
        self.site_hist = {}         # site -> Series(TH/s, W)
        self.version = 0            # bumped on every applied message (views redraw on change)
        self.rejected = 0           # undecodable messages
        self.duplicates = 0
        self.listeners = []         # fn(kind, site, rig, decoded), called outside the lock

    # -- input ---------------------------------------------------------------------------------
    def feed(self, topic, payload, now_s=None):
        """Raw MQTT message -> applied; False (and counted) when it is not a valid payload."""
        parts = topics.split(topic)
        if parts is None or parts[0] is None or parts[2].startswith('cmd/') and parts[2] != 'cmd/result':
            return False
        try:
            decoded = consumer.decode(topic, payload)
        except ValueError:
            with self.lock:
                self.rejected += 1
            return False
        return self.apply(topic, decoded, now_s)

    def apply(self, topic, msg, now_s=None):
        parts = topics.split(topic)
        if parts is None or parts[0] is None:
            return False
        site, rig, kind = parts
        if self.site is not None and site != self.site:
            return False
        handler = _HANDLERS.get(kind)
        if handler is None:
            return False
        now_s = self.clock() if now_s is None else now_s
        with self.lock:
            r = self.rigs.get(site + '/' + rig)
            if r is None:
                r = self.rigs[site + '/' + rig] = Rig(site, rig)
            if self._duplicate(r, kind, msg):
                self.duplicates += 1
                return False
            r.last_rx_s = now_s
            handler(self, r, msg, now_s)
            self.version += 1
        for fn in self.listeners:
            fn(kind, site, rig, msg)
        return True

    def _duplicate(self, r, kind, msg):
        """QoS 1 redelivery: the same (boot_id, seq) again on a live topic."""
        if kind in ('status', 'meta') or msg.get('historical'):
            return False
        boot, seq = msg.get('boot_id'), msg.get('seq')
        last = r.seen.get(kind)
        r.seen[kind] = (boot, seq)
        return last is not None and last == (boot, seq)

    def _on_status(self, r, msg, now_s):
        r.online = bool(msg.get('online'))
        r.boot_id = msg.get('boot_id')
        if msg.get('model'):
            r.model = msg['model']
            if r.row is not None:
                r.row['model'] = r.model

    def _on_meta(self, r, msg, now_s):
        r.meta = msg
        r.model = msg.get('model') or r.model

    def _on_telemetry(self, r, msg, now_s):
        if msg.get('historical'):
            self._history(r, msg)
            return
        if r.tel is not None and msg.get('boot_id') == r.tel.get('boot_id') \
                and (msg.get('seq') or 0) < (r.tel.get('seq') or 0):
            return      # late live message: keep the newer one
        r.tel = msg
        r.tel_rx_s = now_s
        if r.online is None:
            r.online = True
        r.row = rig_row(r)
        self._history(r, msg)

    def _history(self, r, msg):
        ts_s = (msg.get('ts_ms') or 0) / 1000.0
        last = r.hist.last_ts()
        if last is None or ts_s >= last + HIST_STEP_S:
            hr = _num(msg.get('hashrate_ghs')) or 0.0
            r.hist.add(ts_s, hr / 1000.0, _num(msg.get('power_w')) or 0.0)

    def _on_chips(self, r, msg, now_s):
        if not msg.get('historical'):
            r.chips = msg

    def _on_alarm(self, r, msg, now_s):
        self.alarm_log.append(_alarm_entry(r.site, r.rig, msg))
        if msg.get('historical'):
            return
        if msg.get('event') == 'raise':
            r.alarms[msg.get('id')] = msg
        elif msg.get('event') == 'clear':
            r.alarms.pop(msg.get('id'), None)

    def _on_result(self, r, msg, now_s):
        r.results[msg.get('id')] = msg
        while len(r.results) > RESULTS_KEPT:
            r.results.popitem(last=False)

    # -- output (snapshots) ---------------------------------------------------------------------
    def link_state(self, r, now_s):
        if r.online is False:
            return 'offline'
        if r.tel_rx_s is None or now_s - r.tel_rx_s > self.stale_s:
            return 'stale' if r.online else 'unknown'
        return 'online'

    def _full_row(self, r, now_s):
        row = dict(r.row) if r.row is not None else {'key': r.site + '/' + r.rig, 'site': r.site,
                                                     'rig': r.rig, 'model': r.model}
        row['link'] = self.link_state(r, now_s)
        row['age_s'] = None if r.tel_rx_s is None else max(0.0, now_s - r.tel_rx_s)
        row['alarms'] = sorted(str(a) for a in r.alarms)
        return row

    def rows(self, site=None, text=None, sort='key', reverse=False, now_s=None):
        """Per-rig rows, filtered by site and by a text found in key/model/safety/alarms."""
        now_s = self.clock() if now_s is None else now_s
        with self.lock:
            rigs = list(self.rigs.values())
            out = [self._full_row(r, now_s) for r in rigs if site is None or r.site == site]
        return sort_rows(filter_rows(out, text), sort, reverse)

    def site_totals(self, now_s=None, rows=None):
        """site -> {'rigs', 'online', 'ths', 'w', 'jth', 'alarms'} (online rigs' sums)."""
        rows = self.rows(now_s=now_s) if rows is None else rows
        out = {}
        for row in rows:
            t = out.setdefault(row['site'], {'site': row['site'], 'rigs': 0, 'online': 0,
                                             'ths': 0.0, 'w': 0.0, 'alarms': 0})
            t['rigs'] += 1
            t['alarms'] += len(row['alarms'])
            if row['link'] == 'online':
                t['online'] += 1
                t['ths'] += row.get('ths') or 0.0
                t['w'] += row.get('w') or 0.0
        for t in out.values():
            t['jth'] = t['w'] / t['ths'] if t['ths'] else None
        return out

    def sample_sites(self, now_s=None):
        """Append the site totals to the site history every SITE_STEP_S (called by the views)."""
        now_s = self.clock() if now_s is None else now_s
        totals = self.site_totals(now_s)
        with self.lock:
            for site, t in totals.items():
                s = self.site_hist.get(site)
                if s is None:
                    s = self.site_hist[site] = Series(SITE_POINTS)
                last = s.last_ts()
                if last is None or now_s >= last + SITE_STEP_S:
                    s.add(now_s, t['ths'], t['w'])
        return totals

    def site_history(self, site, since_s=None):
        with self.lock:
            s = self.site_hist.get(site)
            return s.points(since_s) if s else []

    def row(self, key, now_s=None):
        """One rig's row (as in rows()), or None."""
        now_s = self.clock() if now_s is None else now_s
        with self.lock:
            r = self.rigs.get(key)
            return None if r is None else self._full_row(r, now_s)

    def rig(self, key):
        with self.lock:
            return self.rigs.get(key)

    def rig_detail(self, key, now_s=None):
        """Everything a rig page shows: row, meta, board summaries, chip arrays, alarms, history."""
        now_s = self.clock() if now_s is None else now_s
        with self.lock:
            r = self.rigs.get(key)
            if r is None:
                return None
            return {'row': self._full_row(r, now_s), 'meta': r.meta, 'telemetry': r.tel,
                    'chips': r.chips, 'alarms': [_alarm_entry(r.site, r.rig, a) for a in r.alarms.values()],
                    'history': r.hist.points(), 'results': list(r.results.values())[-10:]}

    def result(self, key, cmd_id):
        with self.lock:
            r = self.rigs.get(key)
            return None if r is None else r.results.get(cmd_id)

    def alarms(self, limit=200, site=None):
        with self.lock:
            log = list(self.alarm_log)
        if site is not None:
            log = [a for a in log if a['site'] == site]
        return log[-limit:][::-1]


_HANDLERS = {'status': FleetState._on_status, 'meta': FleetState._on_meta,
             'telemetry': FleetState._on_telemetry, 'chips': FleetState._on_chips,
             'alarm': FleetState._on_alarm, 'cmd/result': FleetState._on_result}

SORT_KEYS = ('key', 'ths', 'w', 'jth', 'hot_c', 'fan_pct', 'age_s', 'alarms', 'link')


def _haystack(row):
    return ' '.join(str(row.get(k) or '') for k in ('key', 'model', 'safety', 'tuner', 'link', 'pool')
                    ).lower() + ' ' + ' '.join(row['alarms']).lower()


def filter_rows(rows, text):
    """Rows whose rig, model, safety, tuner, link, pool or alarm ids contain `text`."""
    if not text:
        return rows
    t = text.lower()
    return [row for row in rows if t in _haystack(row)]


def sort_rows(rows, sort='key', reverse=False):
    if sort not in SORT_KEYS:
        raise ValueError('sort key must be one of %s' % (', '.join(SORT_KEYS),))
    if sort in ('key', 'link'):
        return sorted(rows, key=lambda r: (str(r.get(sort)), r['key']), reverse=reverse)
    if sort == 'alarms':
        return sorted(rows, key=lambda r: (len(r['alarms']), r['key']), reverse=reverse)
    # Numbers; rigs without a value always last.
    have = [r for r in rows if r.get(sort) is not None]
    none = [r for r in rows if r.get(sort) is None]
    have.sort(key=lambda r: (r[sort], r['key']), reverse=reverse)
    return have + sorted(none, key=lambda r: r['key'])
