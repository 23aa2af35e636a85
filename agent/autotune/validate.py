"""Validators of the tuner's commands (autotune, set_power_target). Pure: the agent's
TuneSession and the MicroPython port register them with their own handlers."""

from agent import commands

MODES = ('power', 'hashrate', 'efficiency', 'thermal', 'heat')


def validate_autotune(body, ctx):
    """autotune {action: start, profile?, mode?, target?} | {action: stop}."""
    err = commands.check_keys(body, ('action', 'profile', 'mode', 'target'))
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
        if mode not in MODES:
            return None, "mode must be 'power', 'hashrate', 'efficiency', 'thermal' or 'heat'"
        out['mode'] = mode
    target = body.get('target')
    if target is not None:
        # The range depends on the mode (W or TH/s), known once the profile is loaded:
        # TuneSession.start checks it before anything starts.
        if not commands.number(target) or target <= 0:
            return None, 'target must be a positive number (W or TH/s)'
        out['target'] = float(target)
    return out, None


def validate_set_heat_budget(body, ctx):
    """set_heat_budget {w}: heat into the room, heat_min_w..heat_max_w."""
    out, err = validate_set_power_target(body, {'power_min_w': ctx.get('heat_min_w', 0),
                                                'power_max_w': ctx.get('heat_max_w', 0)})
    return out, err


def validate_set_dynamic_scaling(body, ctx):
    """set_dynamic_scaling {on}: re-plan per chip when safety derates (true) or flat cap."""
    err = commands.check_keys(body, ('on',))
    if err:
        return None, err
    if not isinstance(body.get('on'), bool):
        return None, 'on must be true or false'
    return {'on': body['on']}, None


def validate_set_power_target(body, ctx):
    """set_power_target {w}: power_min_w..power_max_w."""
    err = commands.check_keys(body, ('w',))
    if err:
        return None, err
    w = body.get('w')
    if not commands.number(w):
        return None, 'w must be a number (watts)'
    lo, hi = ctx.get('power_min_w', 0), ctx.get('power_max_w', 0)
    if not lo <= w <= hi:
        return None, 'w %s outside %s..%s W' % (w, lo, hi)
    return {'w': float(w)}, None
