"""Assemble the rig status dict that mqtt_schema builders turn into `telemetry` and `chips`.

Reads only what the control thread already holds (last poll, last snapshot): building telemetry
never does hardware I/O of its own.
"""


def _chip_state(chip, board_on):
    if not board_on:
        return 'off'
    if not chip.get('alive', True):
        return 'dead'
    return 'ok'


def tuner_view(tuner):
    """Tuner status in the telemetry's tuner map (idle when none runs)."""
    if tuner is None:
        return {'state': 'idle'}
    st = tuner.get_status()
    unit = 'W' if st.get('mode') == 'power' else 'TH/s'
    return {'state': st.get('stage'), 'progress_pct': st.get('progress_pct'),
            'target': '%s %.1f %s' % (st.get('mode'), st.get('target') or 0.0, unit),
            'eta_s': st.get('eta_s'), 'best_j_per_th': st.get('best_j_per_th'),
            'best_power_w': st.get('best_power_w')}


def collect(control, rig, supervisor=None, health=None, tuner=None, link=None, uptime_s=None):
    snap = control.last_snapshot or {'boards': [], 'fans': [], 'power_w': None}
    safety = supervisor.get_status() if supervisor is not None else {}
    safety_boards = safety.get('boards') or []
    boards = []
    total_ghs = 0.0
    for i, chain in enumerate(rig.chains):
        on = control.enabled[i] and not control.needs_init[i]
        chips = []
        for c in chain.chips:
            st = c.get_status()
            chips.append({'temp_c': st['temp_c'], 'freq_mhz': st['freq_mhz'],
                          'hashrate_ghs': st['hashrate_ghs'] if on else 0.0,
                          'err_pct': st['err_pct'], 'state': _chip_state(st, on)})
        sb = snap['boards'][i] if i < len(snap['boards']) else {}
        sfs = safety_boards[i] if i < len(safety_boards) else {}
        hr = sum(c['hashrate_ghs'] or 0.0 for c in chips if c['state'] == 'ok')
        total_ghs += hr
        boards.append({'index': i, 'chips': chips, 'temps_c': sb.get('sensors_c'),
                       'voltage_mv': sb.get('voltage_mv'), 'enabled': control.enabled[i],
                       'safety': sfs.get('state'),
                       'safety_reason': sfs.get('reason') if sfs.get('state') not in (None, 'normal') else None,
                       'freq_cap_pct': control.caps_pct[i], 'hashrate_ghs': hr})
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
    }
    return status
