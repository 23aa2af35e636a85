"""Assemble the rig status dict that mqtt_schema builders turn into `telemetry` and `chips`.

Reads only what the control thread already holds (last poll, last snapshot): building telemetry
never does hardware I/O of its own.
"""

from agent import options
from hal import hashsum

SECTION = options.section('telemetry', [
    options.opt('poll_s', 'float', 2.0, 'chip die temperatures and counters poll period',
                0.5, 600.0),
    options.opt('telemetry_s', 'float', 10.0, 'rig/board summary period', 1.0, 3600.0),
    options.opt('chips_s', 'float', 60.0, 'per-chip snapshot period', 5.0, 3600.0),
])


def tuner_view(tuner):
    """Tuner status in the telemetry's tuner map (idle when none runs)."""
    if tuner is None:
        return {'state': 'idle'}
    st = tuner.get_status()
    mode = st.get('mode')
    # thermal's target is a die ceiling, not a rate
    unit = 'W' if mode in ('power', 'heat') else 'C' if mode == 'thermal' else 'TH/s'
    target = st.get('heat_budget_w') if st.get('mode') == 'heat' else st.get('target')
    return {'state': st.get('stage'), 'progress_pct': st.get('progress_pct'),
            'target': '%s %.1f %s' % (st.get('mode'), target or 0.0, unit),
            'eta_s': st.get('eta_s'), 'best_j_per_th': st.get('best_j_per_th'),
            'best_power_w': st.get('best_power_w'), 'heat_budget_w': st.get('heat_budget_w'),
            'heat_w': st.get('heat_w')}


POOL_KEYS = ('index', 'url', 'state', 'connected', 'difficulty', 'accepted', 'rejected', 'stale',
             'duplicate', 'last_share_age_s')


def pools_view(work):
    """Pool rows for telemetry (no worker names, no secrets); None when the work path is off."""
    if work is None:
        return None
    return [{k: p.get(k) for k in POOL_KEYS} for p in work.pools.status()['pools']]


def _chip_rows(chain, on, nonce_rows):
    chips = []
    for k, c in enumerate(chain.chips):
        row = {'temp_c': c.temp_c, 'freq_mhz': c.freq_mhz,
               'hashrate_ghs': c.hashrate_ghs if on else 0.0,
               'err_pct': c.err_pct, 'state': hashsum.chip_state(c, on)}
        if k < len(nonce_rows):      # work path on: figures from verified nonces
            row['nonce_hashrate_ghs'] = nonce_rows[k]['hashrate_ghs'] if on else 0.0
            row['hw_err_pct'] = nonce_rows[k]['hw_err_pct']
        chips.append(row)
    return chips


def collect(control, rig, supervisor=None, health=None, tuner=None, link=None, uptime_s=None,
            work=None):
    snap = control.last_snapshot or {'boards': [], 'fans': [], 'power_w': None}
    safety = supervisor.get_status() if supervisor is not None else {}
    safety_boards = safety.get('boards') or []
    scaling = _scaling_views(control)
    boards = []
    for i, chain in enumerate(rig.chains):
        on = control.enabled[i] and not control.needs_init[i]
        chips = _chip_rows(chain, on, work.chip_status(i) if work is not None else ())
        sb = snap['boards'][i] if i < len(snap['boards']) else {}
        sfs = safety_boards[i] if i < len(safety_boards) else {}
        hr = hashsum.chain_ghs(chain.chips, on)   # the chain status's figure, when on
        boards.append({'index': i, 'chips': chips, 'temps_c': sb.get('sensors_c'),
                       'voltage_mv': sb.get('voltage_mv'), 'enabled': control.enabled[i],
                       'safety': sfs.get('state'),
                       'safety_reason': sfs.get('reason') if sfs.get('state') not in (None, 'normal') else None,
                       'freq_cap_pct': control.caps_pct[i], 'hashrate_ghs': hr,
                       'scaling': scaling[i] if i < len(scaling) else None})
    total_ghs = hashsum.rig_ghs([b['hashrate_ghs'] for b in boards])
    power_w = snap.get('power_w')
    rig_state = safety.get('state', 'running')
    status = {
        'state': rig_state,
        'reason': safety.get('reason') if rig_state not in ('normal', 'running') else None,
        'hashrate_ghs': total_ghs,
        'power_w': power_w,
        'j_per_th': (power_w / (total_ghs / 1000.0)) if power_w and total_ghs > 1.0 else None,
        'uptime_s': uptime_s,
        'fans': snap.get('fans') or [],
        'ctrl': health.get_status() if health is not None else None,
        'tuner': tuner_view(tuner),
        'outbox_dropped': (link.get_status().get('dropped') if link is not None else None),
        'boards': boards,
        'pools': pools_view(work),
    }
    status.update(_modes_view(control, safety))
    return status


def _scaling_views(control):
    """Per board: 'replan' while dynamic scaling re-plans its derate, else None (absent)."""
    return ['replan' if getattr(b, 'plan', None) is not None else None
            for b in getattr(control, 'boards', ())]


def _modes_view(control, safety):
    """Immersion and dynamic scaling fields; None (absent on the wire) unless on, so payloads of
    air-cooled rigs without dynamic scaling stay byte for byte as they were."""
    return {'cooling': 'immersion' if safety.get('cooling') == 'immersion' else None,
            'coolant_c': safety.get('coolant_c'),
            'dynamic_scaling': True if getattr(control, 'dynamic_scaling', False) else None}
