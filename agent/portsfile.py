"""The simulator's ports file (`hashpilot sim --ports-file F`), read defensively: it names the
rig's model and ports, and a bad one must be a clear config error, never a traceback."""

import json

from agent.options import ConfigError

PORTS_TYPES = {'model': str, 'chains': list, 'board': str, 'baud': int,
               'time_scale': (int, float), 'pid': int, 'seed': int, 'work_check_bits': int}


def read_ports_file(path):
    """The simulator's ports file as a dict, every known field of the right type; anything
    else (a list, junk, a 5000-deep nest, a huge file) is a clear ConfigError."""
    where = 'rig.ports_file %s' % path
    try:
        with open(path, 'rb') as f:
            raw = f.read((1 << 20) + 1)
        if len(raw) > 1 << 20:
            raise ValueError('larger than 1 MiB')
        ports = json.loads(raw)
    except RecursionError:
        raise ConfigError('%s: nested too deeply' % where)
    except (OSError, ValueError) as e:
        raise ConfigError('%s: %s' % (where, e))
    if not isinstance(ports, dict):
        raise ConfigError('%s: expected a JSON object, got %s' % (where, type(ports).__name__))
    for key, kind in PORTS_TYPES.items():
        v = ports.get(key)
        if v is not None and (not isinstance(v, kind) or isinstance(v, bool)):
            raise ConfigError('%s: %r must be %s' % (where, key, getattr(kind, '__name__', 'a number')))
    if any(not isinstance(c, str) for c in ports.get('chains') or []):
        raise ConfigError('%s: chains must be port names (strings)' % where)
    ts = ports.get('time_scale')
    if ts is not None and not (0.01 <= ts <= 10000.0):   # also refuses nan and inf
        raise ConfigError('%s: time_scale %r outside 0.01..10000' % (where, ts))
    return ports
