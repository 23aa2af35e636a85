"""Test helper: real hashpilot payloads (mqtt_schema builders) for a number of virtual rigs.

    fleet = FakeFleet(n=20, sites=('north', 'south'))
    for topic, data, retain in fleet.messages(now_ms):   # status, meta, telemetry, chips
        ...
Rig i: S21 or S19JPRO alternating, hashrate/power/temperatures varying with i so sorting and
heat maps have something to show; `hot` rigs carry a board_hot alarm.
"""

import random

from hal import models
from mqtt_schema import codec, payloads
from mqtt_schema import topics as T


class FakeRig:
    def __init__(self, site, name, model, seed, chips_per_board=None):
        self.site, self.name = site, name
        self.model = models.get(model)
        self.rng = random.Random(seed)
        self.session = payloads.new_session()
        self.cpb = chips_per_board or self.model['chips_per_board']
        self.scale = 0.8 + 0.4 * self.rng.random()
        self.hot = seed % 7 == 3

    def status(self):
        m = self.model
        boards = []
        for b in range(m['boards']):
            chips = []
            for c in range(self.cpb):
                t = 55.0 + 20.0 * self.scale + 6.0 * (c % 12) / 12.0 + (8.0 if self.hot and b == 1 else 0.0)
                chips.append({'temp_c': round(t + self.rng.uniform(-1, 1), 1),
                              'freq_mhz': m['f_nom_mhz'] * (0.9 + 0.2 * self.rng.random()),
                              'hashrate_ghs': 200000.0 * self.scale / (m['boards'] * self.cpb),
                              'err_pct': round(self.rng.uniform(0, 0.5), 2),
                              'state': 'dead' if (b == 2 and c == 5 and self.hot) else 'ok'})
            boards.append({'index': b, 'temps_c': [50.0, 60.0], 'voltage_mv': m['stock_board_mv'],
                           'enabled': True, 'safety': 'hot' if self.hot and b == 1 else 'ok', 'chips': chips})
        hr = 200000.0 * self.scale if m['name'] == 'S21' else 100000.0 * self.scale
        eff = 0.94 + 0.12 * ((self.rng.random() + (hash(self.name) % 100) / 100.0) / 2)   # J/TH spread
        return {'state': 'running', 'hashrate_ghs': hr, 'power_w': m['nameplate_w'] * self.scale * eff,
                'fans': [{'duty_pct': 40 + 40 * self.scale, 'rpm': 4000}] * m['fans'],
                'tuner': {'state': 'done'}, 'boards': boards}

    def root(self):
        return T.root(self.site, self.name)

    def birth(self, now_ms):
        return [(self.root() + 'status', codec.encode(payloads.build_birth(
                    self.session, 1, model=self.model['name'], ts_ms=now_ms)), True),
                (self.root() + 'meta', codec.encode(payloads.build_meta(
                    self.model, self.session, ts_ms=now_ms)), True)]

    def live(self, now_ms, chips=True):
        st = self.status()
        out = [(self.root() + 'telemetry', codec.encode(payloads.build_telemetry(st, self.session, now_ms)), False)]
        if chips:
            out.append((self.root() + 'chips', codec.encode(payloads.build_chips(st, self.session, now_ms)), False))
        if self.hot and self.session['seq'].get('alarm') is None:
            out.append((self.root() + 'alarm', codec.encode(payloads.build_alarm(
                self.session, 'board_hot', 'raise', 'warning', 'board 1 hot', board=1, ts_ms=now_ms)), False))
        return out


class FakeFleet:
    def __init__(self, n=10, sites=('north',), chips_per_board=None):
        self.rigs = []
        for i in range(n):
            site = sites[i % len(sites)]
            model = 'S21' if i % 2 == 0 else 'S19JPRO'
            self.rigs.append(FakeRig(site, 'rig-%04d' % i, model, i, chips_per_board))

    def messages(self, now_ms, chips=True):
        out = []
        for r in self.rigs:
            out += r.birth(now_ms)
            out += r.live(now_ms, chips)
        return out

    def feed(self, state, now_ms, chips=True):
        for topic, data, _ in self.messages(now_ms, chips):
            state.feed(topic, data)
