"""Prometheus exposition of the fleet state (prometheus-client custom collector).

Names follow the Prometheus conventions (base units: hashes per second, watts, celsius, hertz,
ratios 0..1; efficiency in the trade's joules per terahash). Labels: site, rig, model, board
(and chip for the opt-in per-chip metrics, 324 series per S21: off by default).
"""

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

GHS = 1e9
RIG_LABELS = ['site', 'rig', 'model']
BOARD_LABELS = RIG_LABELS + ['board']
CHIP_LABELS = BOARD_LABELS + ['chip']


def _g(name, doc, labels):
    return GaugeMetricFamily(name, doc, labels=labels)


class FleetCollector:
    def __init__(self, state, chips=False):
        self.state = state
        self.chips = chips

    def describe(self):
        return []   # no collect() at registration (the state may be large)

    def collect(self):
        rows = self.state.rows()
        totals = self.state.site_totals(rows=rows)
        yield from self._sites(rows, totals)
        yield from self._rigs(rows)
        yield from self._boards(rows)
        yield from self._pools(rows)
        if self.chips:
            yield from self._chips(rows)

    def _sites(self, rows, totals):
        rigs = _g('hashpilot_fleet_rigs', 'Rigs known, by link state (online, stale, offline, unknown)',
                  ['site', 'link'])
        counts = {}
        for r in rows:
            k = (r['site'], r['link'])
            counts[k] = counts.get(k, 0) + 1
        for (site, link), n in sorted(counts.items()):
            rigs.add_metric([site, link], n)
        hr = _g('hashpilot_site_hashrate_hashes_per_second', 'Hashrate of the online rigs of a site', ['site'])
        pw = _g('hashpilot_site_power_watts', 'Wall power of the online rigs of a site', ['site'])
        for site, t in sorted(totals.items()):
            hr.add_metric([site], t['ths'] * 1e12)
            pw.add_metric([site], t['w'])
        return [rigs, hr, pw]

    def _rigs(self, rows):
        fams = {
            'up': _g('hashpilot_rig_up', '1 while the rig is online with fresh telemetry', RIG_LABELS),
            'age': _g('hashpilot_rig_data_age_seconds', 'Seconds since the last telemetry', RIG_LABELS),
            'hr': _g('hashpilot_rig_hashrate_hashes_per_second', 'Rig hashrate', RIG_LABELS),
            'w': _g('hashpilot_rig_power_watts', 'Rig wall power', RIG_LABELS),
            'jth': _g('hashpilot_rig_efficiency_joules_per_terahash', 'Wall power over hashrate', RIG_LABELS),
            'hot': _g('hashpilot_rig_temperature_max_celsius', 'Hottest die of the rig', RIG_LABELS),
            'fan': _g('hashpilot_rig_fan_duty_ratio', 'Highest fan duty (0..1)', RIG_LABELS),
            'al': _g('hashpilot_rig_alarms_active', 'Active alarms', RIG_LABELS),
            'thot': _g('hashpilot_rig_temperature_hot_celsius', 'Throttle temperature of the model (meta)', RIG_LABELS),
            'tdan': _g('hashpilot_rig_temperature_danger_celsius', 'Shutdown temperature of the model (meta)', RIG_LABELS),
        }
        for r in rows:
            lab = [r['site'], r['rig'], r.get('model') or '']
            fams['up'].add_metric(lab, 1 if r['link'] == 'online' else 0)
            fams['al'].add_metric(lab, len(r['alarms']))
            for key, fam, scale in (('age_s', 'age', 1), ('ths', 'hr', 1e12), ('w', 'w', 1),
                                    ('jth', 'jth', 1), ('hot_c', 'hot', 1), ('fan_pct', 'fan', 0.01)):
                if r.get(key) is not None:
                    fams[fam].add_metric(lab, r[key] * scale)
            rig = self.state.rig(r['key'])
            meta = rig.meta if rig is not None else None
            for key, fam in (('temp_hot_c', 'thot'), ('temp_danger_c', 'tdan')):
                if meta and isinstance(meta.get(key), (int, float)):
                    fams[fam].add_metric(lab, meta[key])
        return list(fams.values())

    def _boards(self, rows):
        fams = (
            ('hashrate_ghs', GHS, _g('hashpilot_board_hashrate_hashes_per_second', 'Board hashrate', BOARD_LABELS)),
            ('temp_max_c', 1, _g('hashpilot_board_temperature_max_celsius', 'Hottest die of the board', BOARD_LABELS)),
            ('freq_avg_mhz', 1e6, _g('hashpilot_board_frequency_average_hertz', 'Mean chip frequency', BOARD_LABELS)),
            ('voltage_mv', 1e-3, _g('hashpilot_board_voltage_volts', 'Board voltage', BOARD_LABELS)),
            ('err_pct', 0.01, _g('hashpilot_board_error_ratio', 'Mean chip hardware error ratio', BOARD_LABELS)),
            ('chips_ok', 1, _g('hashpilot_board_chips_ok', 'Chips answering and hashing', BOARD_LABELS)),
        )
        for r in rows:
            rig = self.state.rig(r['key'])
            tel = rig.tel if rig is not None else None
            for b in (tel or {}).get('boards') or ():
                lab = [r['site'], r['rig'], r.get('model') or '', str(b.get('index'))]
                for key, scale, fam in fams:
                    v = b.get(key)
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        fam.add_metric(lab, v * scale)
        return [f[2] for f in fams]

    def _pools(self, rows):
        """Stratum pools of rigs that run the work path (telemetry `pools`)."""
        up = _g('hashpilot_rig_pool_up', '1 while the rig mines on this pool', RIG_LABELS + ['pool'])
        shares = CounterMetricFamily('hashpilot_rig_pool_shares', 'Shares since the agent started',
                                     labels=RIG_LABELS + ['pool', 'result'])
        for r in rows:
            rig = self.state.rig(r['key'])
            for p in ((rig.tel if rig is not None else None) or {}).get('pools') or ():
                if not isinstance(p, dict):
                    continue
                lab = [r['site'], r['rig'], r.get('model') or '', str(p.get('url'))]
                up.add_metric(lab, 1 if p.get('connected') and p.get('state') == 'up' else 0)
                for key in ('accepted', 'rejected', 'stale'):
                    if isinstance(p.get(key), int):
                        shares.add_metric(lab + [key], p[key])
        return [up, shares]

    def _chips(self, rows):
        fams = (('temp_c', 1, _g('hashpilot_chip_temperature_celsius', 'Die temperature', CHIP_LABELS)),
                ('hashrate_ghs', GHS, _g('hashpilot_chip_hashrate_hashes_per_second', 'Chip hashrate', CHIP_LABELS)),
                ('freq_mhz', 1e6, _g('hashpilot_chip_frequency_hertz', 'Chip frequency', CHIP_LABELS)),
                ('err_pct', 0.01, _g('hashpilot_chip_error_ratio', 'Chip hardware error ratio', CHIP_LABELS)))
        for r in rows:
            rig = self.state.rig(r['key'])
            chips = rig.chips if rig is not None else None
            for b in (chips or {}).get('boards') or ():
                base = [r['site'], r['rig'], r.get('model') or '', str(b.get('index'))]
                for key, scale, fam in fams:
                    for i, v in enumerate(b.get(key) or ()):
                        if v is not None:
                            fam.add_metric(base + [str(i)], v * scale)
        return [f[2] for f in fams]


def registry_for(state, chips=False):
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FleetCollector(state, chips))
    return reg


def exposition(registry):
    """(body bytes, content type) of one scrape."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
