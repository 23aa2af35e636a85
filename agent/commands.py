"""Remote command validation: every command is checked fully before anything changes.

`validate(op, body, ctx, now_unix_s)` returns (command, None) or (None, reason). The control
thread applies only validated commands; the safety supervisor still has the last word.
Plain dicts and functions so the rules can move to MicroPython with the rest of the core.
"""

MAX_ID_LEN = 64


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v \
        and v not in (float('inf'), float('-inf'))


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_keys(body, allowed):
    extra = [k for k in body if k not in allowed]
    if extra:
        return 'unknown field(s): %s' % ', '.join(sorted(str(k) for k in extra))
    return None


def _v_set_fan(body, ctx):
    err = _check_keys(body, ('mode', 'duty_pct'))
    if err:
        return None, err
    mode = body.get('mode')
    if mode not in ('auto', 'manual'):
        return None, "mode must be 'auto' or 'manual'"
    if mode == 'auto':
        if 'duty_pct' in body:
            return None, 'duty_pct is only for manual mode'
        return {'mode': 'auto'}, None
    duty = body.get('duty_pct')
    if not _num(duty):
        return None, 'manual mode needs duty_pct (number)'
    if duty < ctx.get('fan_min_pct', 0) or duty > 100:
        return None, 'duty_pct %s outside %s..100' % (duty, ctx.get('fan_min_pct', 0))
    return {'mode': 'manual', 'duty_pct': float(duty)}, None


def _v_board_chip(body, ctx):
    """Optional board / chip selectors; chip needs board."""
    board = body.get('board')
    chip = body.get('chip')
    boards = ctx.get('boards', 0)
    if board is not None:
        if not _int(board) or not 0 <= board < boards:
            return None, None, 'board must be an integer 0..%d' % (boards - 1)
    if chip is not None:
        if board is None:
            return None, None, 'chip needs board'
        n = ctx.get('chips_per_board', 0)
        if not _int(chip) or not 0 <= chip < n:
            return None, None, 'chip must be an integer 0..%d' % (n - 1)
    return board, chip, None


def _v_set_frequency(body, ctx):
    err = _check_keys(body, ('mhz', 'board', 'chip'))
    if err:
        return None, err
    mhz = body.get('mhz')
    if not _num(mhz):
        return None, 'mhz must be a number'
    lo, hi = ctx.get('freq_min_mhz', 0), ctx.get('freq_max_mhz', 0)
    if not lo <= mhz <= hi:
        return None, 'mhz %s outside the family limits %s..%s' % (mhz, lo, hi)
    board, chip, err = _v_board_chip(body, ctx)
    if err:
        return None, err
    return {'mhz': float(mhz), 'board': board, 'chip': chip}, None


def _v_empty(body, ctx):
    err = _check_keys(body, ())
    if err:
        return None, err
    return {}, None


def _v_identify(body, ctx):
    err = _check_keys(body, ('duration_s',))
    if err:
        return None, err
    dur = body.get('duration_s', 30)
    if not _num(dur) or not 1 <= dur <= 3600:
        return None, 'duration_s must be a number 1..3600'
    return {'duration_s': float(dur)}, None


def _v_reset_safety(body, ctx):
    err = _check_keys(body, ('board',))
    if err:
        return None, err
    board, _, err = _v_board_chip(body, ctx)
    if err:
        return None, err
    return {'board': board}, None


def _v_autotune(body, ctx):
    err = _check_keys(body, ('action', 'profile', 'mode', 'target'))
    if err:
        return None, err
    action = body.get('action', 'start')
    if action == 'stop':
        if len(body) > 1:
            return None, 'stop takes no other field'
        return {'action': 'stop'}, None
    if action != 'start':
        return None, "action must be 'start' or 'stop'"
    prof = body.get('profile', 'balanced')
    if not isinstance(prof, str) or not prof or len(prof) > 64 or '/' in prof or '\\' in prof:
        return None, 'profile must be the name of a profile (no paths)'
    out = {'action': 'start', 'profile': prof}
    mode = body.get('mode')
    if mode is not None:
        if mode not in ('power', 'hashrate', 'efficiency'):
            return None, "mode must be 'power', 'hashrate' or 'efficiency'"
        out['mode'] = mode
    target = body.get('target')
    if target is not None:
        # The range depends on the mode (W or TH/s), known once the profile is loaded: the
        # agent checks it there (Agent.start_tuner) before anything starts.
        if not _num(target) or target <= 0:
            return None, 'target must be a positive number (W or TH/s)'
        out['target'] = float(target)
    return out, None


def _v_set_power_target(body, ctx):
    err = _check_keys(body, ('w',))
    if err:
        return None, err
    w = body.get('w')
    if not _num(w):
        return None, 'w must be a number (watts)'
    lo, hi = ctx.get('power_min_w', 0), ctx.get('power_max_w', 0)
    if not lo <= w <= hi:
        return None, 'w %s outside %s..%s W' % (w, lo, hi)
    return {'w': float(w)}, None


VALIDATORS = {
    'autotune': _v_autotune,
    'set_power_target': _v_set_power_target,
    'set_fan': _v_set_fan,
    'set_frequency': _v_set_frequency,
    'rebirth': _v_empty,
    'identify': _v_identify,
    'reset_safety': _v_reset_safety,
}


def register(op, validator):
    """Add a command (explicit registration, visible to PyInstaller; no discovery)."""
    VALIDATORS[op] = validator


def validate(op, cid, args, ctx):
    """Check a command decoded by mqtt_schema.consumer.parse_command: (cmd, None) or (None, reason).

    cmd = {'op', 'id', 'args'} with normalised args; unknown ops, unknown fields, wrong types and
    out-of-range values are refused here, before anything changes.
    """
    if op not in VALIDATORS:
        return None, 'unknown command %r (known: %s)' % (op, ', '.join(sorted(VALIDATORS)))
    if not isinstance(cid, str) or not 0 < len(cid) <= MAX_ID_LEN:
        return None, 'id must be a string of 1..%d characters' % MAX_ID_LEN
    if not isinstance(args, dict):
        return None, 'args must be a map'
    out, err = VALIDATORS[op](args, ctx)
    if err:
        return None, err
    return {'op': op, 'id': cid, 'args': out}, None


def expired(ts_ms, now_unix_s, max_age_s):
    """Reason string when a command sent at ts_ms (Unix ms) is too old to apply, else None.

    A command queued in a broker during an outage must not be applied minutes later.
    """
    if ts_ms is None:
        return None
    age_s = now_unix_s - ts_ms / 1000.0
    if age_s > max_age_s:
        return 'command expired: sent %.0f s ago (max age %.0f s)' % (age_s, max_age_s)
    if -age_s > max_age_s:
        return 'command timestamp %.0f s in the future (clock skew > %.0f s)' % (-age_s, max_age_s)
    return None
