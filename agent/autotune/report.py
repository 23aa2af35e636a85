"""`hashpilot tune report`: saved tune results -> PNG (per-board heat maps of chip frequency and
die temperature in chain order, and the efficiency-vs-power curve the search went through)."""

import json
import math
import os

from agent.autotune.png import Canvas, colormap

GREY = (120, 120, 120)
BLACK = (0, 0, 0)
CELL = 14


def load_records(path):
    """One result file, or every tune-*.json in a directory (sorted by board index)."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if f.startswith('tune-') and f.endswith('.json'))
    else:
        files = [path]
    recs = []
    for f in files:
        with open(f) as fh:
            try:
                rec = json.load(fh)
            except ValueError as e:
                raise ValueError('%s: not a tune result (a JSON file written by the tuner, e.g. '
                                 '<state_dir>/tune/tune-*.json): %s' % (f, e))
        if not isinstance(rec, dict) or not isinstance(rec.get('freqs_mhz'), list):
            raise ValueError('%s: not a tune result (no freqs_mhz list)' % f)
        recs.append(rec)
    if not recs:
        raise ValueError('no tune results in %s' % path)
    recs.sort(key=lambda r: r.get('board', 0))
    return recs


def _grid_shape(n):
    cols = max(1, int(math.ceil(math.sqrt(n * 1.6))))
    rows = int(math.ceil(n / float(cols)))
    return cols, rows


def _heat(c, x, y, values, label, unit):
    vals = [v for v in values if v is not None]
    lo = min(vals) if vals else 0.0
    hi = max(vals) if vals else 1.0
    cols, rows = _grid_shape(len(values))
    c.text(x, y, '%s %s %s..%s' % (label, unit, _fmt(lo), _fmt(hi)), BLACK)
    y0 = y + 16
    for i, v in enumerate(values):
        cx = x + (i % cols) * CELL
        cy = y0 + (i // cols) * CELL
        rgb = GREY if v is None else colormap((v - lo) / (hi - lo) if hi > lo else 0.5)
        c.rect(cx, cy, CELL - 1, CELL - 1, rgb)
    return cols * CELL, 16 + rows * CELL


def _fmt(v):
    return ('%.0f' % v) if abs(v) >= 100 else ('%.1f' % v)


def _curve(c, x, y, w, h, pts):
    c.frame(x, y, w, h, BLACK)
    c.text(x, y - 14, 'J/TH VS W (SEARCH)', BLACK)
    pts = [p for p in pts if p and p[1] is not None]
    if not pts:
        c.text(x + 10, y + h // 2, 'NO POINTS', GREY)
        return
    ws = [p[0] for p in pts]
    js = [p[1] for p in pts]
    w0, w1 = min(ws), max(ws)
    j0, j1 = min(js), max(js)
    if w1 - w0 < 1e-9:
        w0, w1 = w0 - 1, w1 + 1
    if j1 - j0 < 1e-9:
        j0, j1 = j0 - 0.1, j1 + 0.1

    def px(p):
        return (x + 8 + (p[0] - w0) / (w1 - w0) * (w - 16),
                y + h - 8 - (p[1] - j0) / (j1 - j0) * (h - 16))

    order = sorted(pts)
    for a, b in zip(order, order[1:]):
        (xa, ya), (xb, yb) = px(a), px(b)
        c.line(xa, ya, xb, yb, (40, 90, 200), 2)
    for p in pts:
        xx, yy = px(p)
        c.rect(int(xx) - 3, int(yy) - 3, 7, 7, (220, 30, 20))
    c.text(x, y + h + 4, '%s W' % _fmt(w0), BLACK)
    c.text(x + w - 60, y + h + 4, '%s W' % _fmt(w1), BLACK)
    c.text(x + w + 6, y + 2, _fmt(j1), BLACK)
    c.text(x + w + 6, y + h - 12, _fmt(j0), BLACK)


def render(recs, out_path):
    panels = []
    width = 40
    for r in recs:
        cols, rows = _grid_shape(len(r['freqs_mhz']))
        panels.append((cols, rows))
        width = max(width, 2 * cols * CELL + 80)
    width = max(width, 520)
    height = 60 + sum(40 + rows * CELL + 30 for _c, rows in panels) + 260
    c = Canvas(width, height)
    rig = recs[0].get('rig', {})
    c.text(10, 10, 'TUNE %s %s  %s W  %s J/TH' % (
        recs[0].get('mode', ''), _fmt(recs[0].get('target', 0)), _fmt(rig.get('power_w') or 0),
        _fmt(rig.get('j_per_th') or 0)), BLACK)
    # Colour scale of the heat maps (each map spans its own min..max, printed above it).
    lx = width - 170
    c.text(lx - 24, 10, 'LO', BLACK)
    for k in range(120):
        c.rect(lx + k, 10, 1, 10, colormap(k / 119.0))
    c.text(lx + 126, 10, 'HI', BLACK)
    y = 40
    for r, (cols, rows) in zip(recs, panels):
        c.text(10, y, 'BOARD %d  %d mV' % (r.get('board', 0), r.get('board_mv', 0)), BLACK)
        y += 16
        wf, hf = _heat(c, 10, y, r['freqs_mhz'], 'F', 'MHz')
        _heat(c, 10 + wf + 40, y, r.get('temps_c') or [None] * len(r['freqs_mhz']), 'T', 'C')
        y += hf + 30
    _curve(c, 20, y + 20, width - 120, 200, rig.get('curve') or [])
    c.save(out_path)
    return out_path
