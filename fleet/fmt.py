"""Shared formatting for the operator views: numbers, ages, heat-map colour scales. Pure."""

HEAT_METRICS = {
    # name: (chips key, unit, fixed low, fixed high or None = from the data, higher is worse)
    'temp': ('temp_c', 'degC', 40.0, None, True),
    'freq': ('freq_mhz', 'MHz', None, None, False),
    'err': ('err_pct', '%', 0.0, 2.0, True),
}


def num(x, fmt='%.1f', none='-'):
    return none if x is None else fmt % x


def age(s):
    if s is None:
        return '-'
    if s < 100:
        return '%.0fs' % s
    if s < 6000:
        return '%.0fm' % (s / 60.0)
    return '%.0fh' % (s / 3600.0)


def heat_range(metric, values, meta=None):
    """(low, high) of the colour scale: fixed ends where the metric has them (a temperature scale
    ends at the rig's danger temperature), the data's own range otherwise."""
    _key, _unit, lo, hi, _worse = HEAT_METRICS[metric]
    vals = [v for v in values if v is not None]
    if metric == 'temp' and meta and meta.get('temp_danger_c'):
        hi = meta['temp_danger_c']
    if lo is None:
        lo = min(vals) if vals else 0.0
    if hi is None:
        hi = max(vals) if vals else 1.0
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def heat_rgb(frac):
    """0..1 -> blue (cool) .. green .. yellow .. red (hot), as (r, g, b)."""
    f = 0.0 if frac < 0 else 1.0 if frac > 1 else frac
    stops = ((0.0, (40, 70, 200)), (0.35, (40, 170, 90)), (0.65, (230, 200, 40)), (1.0, (220, 40, 40)))
    for i in range(1, len(stops)):
        if f <= stops[i][0]:
            f0, c0 = stops[i - 1]
            f1, c1 = stops[i]
            t = (f - f0) / (f1 - f0)
            return tuple(int(round(c0[k] + (c1[k] - c0[k]) * t)) for k in range(3))
    return stops[-1][1]


def heat_frac(metric, value, lo, hi):
    if value is None:
        return None
    f = (value - lo) / (hi - lo)
    return f if HEAT_METRICS[metric][4] else 1.0 - f


def emit_json(obj, path=None):
    """A tool's one-line JSON report: to `path` if given, else to stdout."""
    import json
    text = json.dumps(obj, sort_keys=True)
    if path:
        with open(path, 'w') as f:
            f.write(text + '\n')
    else:
        print(text)
