"""Fault injection for the simulator: `--fault KIND:key=value[,key=value...]` (times in sim seconds).

Parsed strictly (unknown kind or key, missing key, bad number, index outside the model -> FaultError
with a message). See docs/simulator.md for the list.
"""

import math
import random

# kind -> {key: (type, required, default)}
KINDS = {
    'corrupt': {'rate': (float, True, None), 'chain': (int, False, None), 'at': (float, False, 0.0)},
    'chip-dead': {'board': (int, True, None), 'chip': (int, True, None), 'at': (float, False, 0.0)},
    'fan-stop': {'fan': (int, True, None), 'at': (float, False, 0.0)},
    'bad-nonces': {'board': (int, True, None), 'chip': (int, True, None),
                   'frac': (float, False, 1.0), 'at': (float, False, 0.0)},
    'sensor-stuck': {'board': (int, True, None), 'sensor': (int, True, None),
                     'value_c': (float, True, None), 'at': (float, False, 0.0)},
    'sensor-absent': {'board': (int, True, None), 'sensor': (int, True, None),
                      'at': (float, False, 0.0)},
    'ambient': {'to_c': (float, True, None), 'at': (float, False, 0.0),
                'ramp_s': (float, False, 0.0)},
}


class FaultError(ValueError):
    pass


def parse_kv(what, spec, keys, out=None):
    """'k=v,k=v' -> dict typed by keys {key: (type, required, default)}; FaultError on junk."""
    out = {} if out is None else out
    if spec.strip():
        for item in spec.split(','):
            k, eq, v = item.partition('=')
            k = k.strip()
            if not eq:
                raise FaultError('%s %r: %r is not key=value' % (what, spec, item))
            if k not in keys:
                raise FaultError('%s: unknown key %r (known: %s)'
                                 % (what, k, ', '.join(sorted(keys))))
            if k in out:
                raise FaultError('%s: key %r given twice' % (what, k))
            try:
                val = keys[k][0](v.strip())
            except ValueError:
                raise FaultError('%s: %s=%r is not a valid %s'
                                 % (what, k, v, keys[k][0].__name__))
            if keys[k][0] is float and (val != val or val in (float('inf'), float('-inf'))):
                raise FaultError('%s: %s is not finite' % (what, k))
            out[k] = val
    for k in keys:
        typ, required, default = keys[k]
        if k not in out:
            if required:
                raise FaultError('%s: missing key %r' % (what, k))
            out[k] = default
    return out


def parse(spec):
    """'chip-dead:board=0,chip=5,at=30' -> {'kind': 'chip-dead', 'board': 0, 'chip': 5, 'at': 30.0}"""
    kind, sep, rest = spec.partition(':')
    kind = kind.strip()
    if kind not in KINDS:
        raise FaultError('unknown fault kind %r in %r (known: %s)'
                         % (kind, spec, ', '.join(sorted(KINDS))))
    out = parse_kv('fault ' + kind, rest, KINDS[kind], {'kind': kind})
    if out['at'] < 0:
        raise FaultError('fault %s: at must be >= 0' % kind)
    if kind == 'bad-nonces' and not 0.0 <= out['frac'] <= 1.0:
        raise FaultError('fault bad-nonces: frac must be within 0..1')
    if kind == 'corrupt' and not 0.0 <= out['rate'] <= 1.0:
        raise FaultError('fault corrupt: rate must be within 0..1')
    if kind == 'ambient' and out['ramp_s'] < 0:
        raise FaultError('fault ambient: ramp_s must be >= 0')
    return out


def validate(fault, model):
    """Check indices against the model; raises FaultError."""
    def check(key, n):
        v = fault.get(key)
        if v is not None and not 0 <= v < n:
            raise FaultError('fault %s: %s=%d outside 0..%d' % (fault['kind'], key, v, n - 1))
    check('board', model['boards'])
    check('chain', model['boards'])
    check('chip', model['chips_per_board'])
    check('fan', model['fans'])
    check('sensor', 2)
    return fault


class Corruptor:
    """Flips a bit or inserts a random byte on the chip->host stream at a per-byte rate."""

    def __init__(self, rate, rng, active):
        self.rate = rate
        self.rng = rng
        self.active = active       # callable() -> bool (the fault's time has come)
        self.events = 0

    def __call__(self, data):
        if not self.active() or self.rate <= 0.0:
            return data
        rng = self.rng
        out = bytearray(data)
        i = 0
        while True:
            # geometric gap to the next corrupted byte
            u = rng.random()
            gap = 0 if self.rate >= 1.0 else int(_log(1.0 - u) / _log(1.0 - self.rate))
            i += gap
            if i >= len(out):
                break
            self.events += 1
            if rng.random() < 0.5:
                out[i] ^= 1 << rng.randrange(8)
            else:
                out[i:i] = bytes([rng.getrandbits(8)])
                i += 1
            i += 1
        return bytes(out)


def _log(x):
    return math.log(x) if x > 0 else -745.0


class FaultSet:
    """Applies parsed faults to a SimRig as simulated time passes."""

    def __init__(self, faults, rig, seed=1):
        self.faults = list(faults)
        self.rig = rig
        self.applied = [False] * len(self.faults)
        self.rng = random.Random(seed * 31 + 5)

    def corruptor(self, chain_index):
        """Corruptor for a chain's output, or None when no corrupt fault touches it."""
        for f in self.faults:
            if f['kind'] == 'corrupt' and (f['chain'] is None or f['chain'] == chain_index):
                at = f['at']
                rig = self.rig
                return Corruptor(f['rate'], random.Random(self.rng.getrandbits(32)),
                                 lambda: rig.t_s >= at)
        return None

    def step(self, t_s):
        rig = self.rig
        for k, f in enumerate(self.faults):
            if self.applied[k] or t_s < f['at']:
                continue
            self.applied[k] = True
            kind = f['kind']
            if kind == 'chip-dead':
                rig.chains[f['board']].chips[f['chip']].accrue(t_s)
                rig.pop[f['board']][f['chip']]['dead'] = True
                rig.chains[f['board']].invalidate()
            elif kind == 'bad-nonces':
                rig.pop[f['board']][f['chip']]['bad_nonce_frac'] = f['frac']
            elif kind == 'fan-stop':
                rig.fan_stopped[f['fan']] = True
            elif kind == 'sensor-stuck':
                rig.sensor_fault[(f['board'], f['sensor'])] = f['value_c']
            elif kind == 'sensor-absent':
                rig.sensor_fault[(f['board'], f['sensor'])] = None
            elif kind == 'ambient':
                rig.ambient_ramp = (f['at'], rig.ambient_c, f['to_c'], f['ramp_s'])

    def get_status(self):
        return [dict(f, applied=self.applied[k]) for k, f in enumerate(self.faults)]
