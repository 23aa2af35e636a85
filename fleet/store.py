"""Telemetry history: rig and board series in VictoriaMetrics, per-chip snapshots as arrays.

Why two stores: a series per chip would be 50 000 rigs x 324 chips x 4 values = 65 M series, far
past what a time-series database indexes well; the chip snapshots are rows of four float32 arrays
(temp_c, freq_mhz, hashrate_ghs, err_pct, board-major, NaN = unknown) in SQLite, keyed by
(site, rig, boot_id, seq) so a message delivered twice, to one consumer or to two sharing a
subscription, is stored once. Rig and board values (a few per message) go to VictoriaMetrics
through its Influx line protocol endpoint, timestamped with the message's own ts; VictoriaMetrics
started with `-dedup.minScrapeInterval=1ms` keeps one sample per series and timestamp, so a
duplicate there is dropped as well.

All I/O happens on the writer thread (`Writer`), never on the consumer's event loop; batches are
written every `flush_s` and `on_commit` is called with the batch's tokens once it is durable (the
consumer acknowledges the MQTT messages then).
"""

import array
import json
import os
import queue
import sqlite3
import threading
import time
import urllib.request

NAN = float('nan')
RIG_FIELDS = ('hashrate_ghs', 'power_w', 'j_per_th', 'uptime_s')
BOARD_FIELDS = ('hashrate_ghs', 'temp_max_c', 'freq_avg_mhz', 'voltage_mv', 'err_pct')
CHIP_ARRAYS = ('temp_c', 'freq_mhz', 'hashrate_ghs', 'err_pct')


def _esc(tag):
    return str(tag).replace('\\', '\\\\').replace(',', '\\,').replace(' ', '\\ ').replace('=', '\\=')


def _fields(src, names):
    parts = []
    for name in names:
        v = src.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
            parts.append('%s=%r' % (name, float(v)))
    return ','.join(parts)


def telemetry_lines(site, rig, msg):
    """Influx lines (ms timestamps) for one decoded telemetry message: rig values and per board."""
    ts = msg.get('ts_ms')
    tags = 'site=%s,rig=%s' % (_esc(site), _esc(rig))
    out = []
    f = _fields(msg, RIG_FIELDS)
    rpm = msg.get('fan_rpm')
    if isinstance(rpm, list):
        vals = [x for x in rpm if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if vals:
            f += (',' if f else '') + 'fan_rpm_min=%r' % float(min(vals))
    if f:
        out.append('hp,%s %s %d' % (tags, f, ts))
    for b in msg.get('boards') or ():
        if isinstance(b, dict):
            bf = _fields(b, BOARD_FIELDS)
            if bf:
                out.append('hp_board,%s,board=%s %s %d' % (tags, _esc(b.get('index')), bf, ts))
    return out


def chip_arrays(msg):
    """Decoded chips message -> ({name: float32 bytes, board-major}, chips per board, abnormal)."""
    arrays = dict((name, array.array('f')) for name in CHIP_ARRAYS)
    per_board = 0
    abnormal = []
    for b in msg.get('boards') or ():
        if not isinstance(b, dict):
            continue
        n = max(len(b.get(name) or ()) for name in CHIP_ARRAYS)
        per_board = max(per_board, n)
        for name in CHIP_ARRAYS:
            vals = b.get(name) or ()
            row = [v if isinstance(v, (int, float)) and not isinstance(v, bool) else NAN for v in vals]
            row += [NAN] * (n - len(row))
            arrays[name].extend(row)
        for pair in b.get('abnormal') or ():
            abnormal.append([b.get('index'), pair])
    return dict((k, v.tobytes()) for k, v in arrays.items()), per_board, abnormal


SCHEMA = '''
CREATE TABLE IF NOT EXISTS chips (
  site TEXT NOT NULL, rig TEXT NOT NULL, boot_id TEXT NOT NULL, seq INTEGER NOT NULL,
  ts_ms INTEGER NOT NULL, chips_per_board INTEGER NOT NULL,
  temp_c BLOB, freq_mhz BLOB, hashrate_ghs BLOB, err_pct BLOB, abnormal TEXT,
  PRIMARY KEY (site, rig, boot_id, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chips_time ON chips (site, rig, ts_ms);
'''


class ChipStore:
    """SQLite (WAL) table of chip snapshots; several consumer processes may write one file."""

    def __init__(self, path):
        self.path = path
        self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute('PRAGMA journal_mode=WAL')
        self.db.execute('PRAGMA synchronous=NORMAL')
        self.db.executescript(SCHEMA)

    def write(self, rows):
        """rows: [(site, rig, boot_id, seq, ts_ms, decoded chips msg)]; duplicates are ignored."""
        out = []
        for site, rig, boot, seq, ts, msg in rows:
            arrays, per_board, abnormal = chip_arrays(msg)
            out.append((site, rig, boot, seq, ts, per_board, arrays['temp_c'], arrays['freq_mhz'],
                        arrays['hashrate_ghs'], arrays['err_pct'],
                        json.dumps(abnormal) if abnormal else None))
        self.db.execute('BEGIN IMMEDIATE')
        try:
            self.db.executemany('INSERT OR IGNORE INTO chips VALUES (?,?,?,?,?,?,?,?,?,?,?)', out)
            self.db.execute('COMMIT')
        except BaseException:
            self.db.execute('ROLLBACK')
            raise

    def snapshots(self, site, rig, since_ms=0):
        """[(ts_ms, seq, {name: [float|None]}, chips_per_board)] oldest first."""
        cur = self.db.execute('SELECT ts_ms, seq, chips_per_board, temp_c, freq_mhz, hashrate_ghs, '
                              'err_pct FROM chips WHERE site=? AND rig=? AND ts_ms>=? ORDER BY ts_ms',
                              (site, rig, since_ms))
        out = []
        for ts, seq, per_board, *blobs in cur:
            arrays = {}
            for name, blob in zip(CHIP_ARRAYS, blobs):
                a = array.array('f')
                a.frombytes(blob or b'')
                arrays[name] = [None if x != x else x for x in a]
            out.append((ts, seq, arrays, per_board))
        return out

    def count(self):
        return self.db.execute('SELECT COUNT(*) FROM chips').fetchone()[0]

    def close(self):
        self.db.close()


class VictoriaMetrics:
    """Influx line protocol writes to a VictoriaMetrics single-node server."""

    def __init__(self, url, timeout_s=30.0):
        self.url = url.rstrip('/')
        self.timeout_s = timeout_s

    def write(self, lines):
        if not lines:
            return
        body = ('\n'.join(lines) + '\n').encode()
        req = urllib.request.Request(self.url + '/write?precision=ms', data=body, method='POST')
        with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
            r.read()

    def query(self, expr, ts_s=None):
        q = 'query=' + urllib.request.quote(expr)
        if ts_s is not None:
            q += '&time=%s' % ts_s
        with urllib.request.urlopen(self.url + '/api/v1/query?' + q, timeout=self.timeout_s) as r:
            return json.loads(r.read())['data']['result']

    def flush(self):
        """Make just-written samples searchable (tests, benchmarks)."""
        with urllib.request.urlopen(self.url + '/internal/force_flush', timeout=self.timeout_s) as r:
            r.read()


class Writer:
    """The consumer's writer thread: put() from the event loop, batches every flush_s."""

    def __init__(self, vm=None, chips=None, flush_s=0.5, on_commit=None, on_error=None):
        self.vm = vm
        self.chips = chips
        self.flush_s = flush_s
        self.on_commit = on_commit
        self.on_error = on_error
        self.q = queue.Queue()
        self.errors = 0
        self.written = {'lines': 0, 'chips': 0}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name='fleet-store', daemon=True)
        self.thread.start()

    def put(self, kind, item, token=None):
        """kind 'telemetry': (site, rig, msg); 'chips': (site, rig, boot, seq, ts, msg); None: token only."""
        self.q.put((kind, item, token))

    def _drain(self):
        lines, chips, tokens = [], [], []
        while True:
            try:
                kind, item, token = self.q.get_nowait()
            except queue.Empty:
                break
            if kind == 'telemetry':
                lines.extend(telemetry_lines(*item))
            elif kind == 'chips':
                chips.append(item)
            if token is not None:
                tokens.append(token)
        return lines, chips, tokens

    def _write(self, lines, chips, tokens):
        for attempt in range(5):
            try:
                if self.vm is not None and lines:
                    self.vm.write(lines)
                    self.written['lines'] += len(lines)
                    lines = []
                if self.chips is not None and chips:
                    self.chips.write(chips)
                    self.written['chips'] += len(chips)
                    chips = []
                break
            except (OSError, sqlite3.Error) as e:   # keep the batch, retry; acks wait for it
                self.errors += 1
                if self.on_error is not None:
                    self.on_error(e)
                time.sleep(min(2.0, 0.2 * (attempt + 1)))
        else:
            return   # not durable: no acks, the broker redelivers after the consumer restarts
        if tokens and self.on_commit is not None:
            self.on_commit(tokens)

    def _run(self):
        while not self._stop.is_set():
            self._stop.wait(self.flush_s)
            self._write(*self._drain())
        self._write(*self._drain())

    def close(self, timeout_s=30.0):
        self._stop.set()
        self.thread.join(timeout_s)


def vm_command(data_dir, port, retention='1d'):
    """argv for a local VictoriaMetrics (Debian `victoria-metrics`) on 127.0.0.1:port."""
    exe = None
    for cand in ('victoria-metrics', '/usr/bin/victoria-metrics'):
        for d in os.environ.get('PATH', '').split(os.pathsep) + ['']:
            p = os.path.join(d, cand) if d else cand
            if os.path.isfile(p) and os.access(p, os.X_OK):
                exe = p
                break
        if exe:
            break
    return [exe or 'victoria-metrics', '-storageDataPath=%s' % data_dir,
            '-httpListenAddr=127.0.0.1:%d' % port, '-retentionPeriod=%s' % retention,
            '-dedup.minScrapeInterval=1ms', '-loggerLevel=ERROR', '-memory.allowedPercent=20']
