"""Tune profiles: strict TOML (unknown keys, wrong types, out-of-range values stop with a message
naming the key and line), shipped profiles in agent/profiles/, user files by path.
"""

import os

from agent import options
from agent.options import ConfigError


def profile_dir():
    """agent/profiles (a function: MicroPython, which has no os.path, imports resolve_target)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'profiles')


_o = options.opt


def _check(sec):
    def bad(key, why):
        raise sec.error(key, '%s %s' % (key, why))
    if sec['board_mv_min'] and sec['board_mv_max'] and sec['board_mv_min'] > sec['board_mv_max']:
        bad('board_mv_min', 'must not exceed board_mv_max')
    if sec['freq_min_mhz'] and sec['freq_max_mhz'] and sec['freq_min_mhz'] > sec['freq_max_mhz']:
        bad('freq_min_mhz', 'must not exceed freq_max_mhz')
    if sec['err_max_pct'] < sec['err_target_pct']:
        bad('err_max_pct', 'must not be below err_target_pct')


_OPTS = [
    _o('description', 'str', '', 'one line shown by `hashpilot tune --list`'),
    _o('mode', 'str', 'power', 'power: most hashes at target W; hashrate: least W at target '
       'TH/s; efficiency: best J/TH with target as the TH/s floor; thermal: most hashes with every '
       'die at or below target C; heat: most hashes with the heat into the room at target W',
       choices=('power', 'hashrate', 'efficiency', 'thermal', 'heat')),
    _o('target', 'float', 0.0, 'W (power), TH/s (hashrate, efficiency floor), die ceiling C '
       '(thermal) or heat W (heat); 0 = use target_rel (thermal: the hot limit less '
       'temp_margin_c)', 0.0, 100000.0),
    _o('heat_share', 'float', 1.0, 'heat mode: share of the wall power that heats the room: 1 '
       'when the whole miner is in it (every wall watt ends as heat), 0.94 (the PSU efficiency) '
       'with the PSU outside', 0.5, 1.0),
    _o('target_rel', 'float', 1.0, 'target as a fraction of nameplate W (power, heat) or of nominal '
       'TH/s (hashrate, efficiency) when target = 0', 0.05, 1.5),
    _o('err_target_pct', 'float', 0.2, 'per-chip error rate the search aims at', 0.01, 2.0),
    _o('err_max_pct', 'float', 0.8, 'a chip above this (statistically) is stepped down',
       0.05, 5.0),
    _o('temp_margin_c', 'float', 3.0, 'keep every die this far below the hot limit', 0.0, 30.0),
    _o('board_mv_min', 'int', 0, 'lowest board voltage; 0 = hardware limit', 0, 20000),
    _o('board_mv_max', 'int', 0, 'highest board voltage; 0 = hardware limit', 0, 20000),
    _o('freq_min_mhz', 'float', 0.0, 'lowest chip frequency; 0 = hardware limit', 0.0, 1000.0),
    _o('freq_max_mhz', 'float', 0.0, 'highest chip frequency; 0 = hardware limit', 0.0, 1000.0),
    _o('power_tol_pct', 'float', 1.0, 'power (or hashrate) band around the target', 0.1, 10.0),
    _o('time_budget_s', 'float', 1800.0, 'give up searching (keep the best) after', 60.0,
       86400.0),
    _o('settle_s', 'float', 45.0, 'wait after a voltage move before judging power', 5.0,
       600.0),
    _o('verify_s', 'float', 120.0, 'steady-state verification before done', 10.0, 3600.0),
    _o('min_err_count', 'float', 8.0, 'errors expected at the target before a decision '
       '(Poisson: 8 tells 0.1 % from 0.5 % with margin)', 2.0, 100.0),
    _o('power_max_w', 'float', 0.0, 'thermal mode: wall-power cap W beside the die ceiling; '
       '0 = the rig\'s power limit less 3 %', 0.0, 100000.0),
    _o('nonce_uart_pct', 'float', 25.0, 'nonce source: nonce traffic at most this share of '
       'the UART (picks the ticket difficulty)', 1.0, 90.0),
    _o('nonce_window_max_s', 'float', 600.0, 'nonce source: longest decision window of a chip '
       '(beyond it decisions are coarser)', 30.0, 7200.0),
    _o('nonce_host_rate_s', 'float', 0.0, 'nonce source: most nonces per second the host '
       'verifies (whole rig; with the UART share it picks the ticket difficulty); 0 = no limit',
       0.0, 1e7),
    _o('retune_temp_c', 'float', 6.0, 'mean die temperature drift that triggers a re-tune',
       1.0, 50.0),
]


SECTION = options.section('profile', _OPTS, check=_check)


def defaults():
    return dict(options.defaults(SECTION))


def validate(raw, where=None):
    """Check a dict of profile keys; return the full profile. Raises ConfigError naming the key."""
    w = (lambda section, key, idx=None: where(key)) if where is not None else None
    return dict(options.build(SECTION, raw, False, w))


def load_file(path):
    """A profile file: TOML with one [profile] table. Returns the profile dict (with 'name')."""
    try:
        with open(path, 'rb') as fh:
            text = fh.read().decode('utf-8')
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError('%s: cannot read profile: %s' % (path, e))
    lines = options.line_index(text)

    def where(key):
        n = lines.get(('profile', None, key)) or lines.get(('profile', None, None))
        return '%s:%d' % (path, n) if n else path

    try:
        import tomllib   # here, not at the top: MicroPython (no tomllib) imports resolve_target
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError('%s: %s' % (path, e))
    extra = [k for k in data if k != 'profile']
    if extra:
        raise ConfigError('%s: unknown table or key %r (a profile has one [profile] table)'
                          % (path, extra[0]))
    body = data.get('profile')
    if not isinstance(body, dict):
        raise ConfigError('%s: missing [profile] table' % path)
    prof = validate(body, where)
    prof['name'] = os.path.splitext(os.path.basename(path))[0]
    return prof


def shipped():
    """Names of the shipped profiles."""
    try:
        return sorted(f[:-5] for f in os.listdir(profile_dir()) if f.endswith('.toml'))
    except OSError:
        return []


def load(name_or_path):
    """A shipped profile by name, or a user file by path."""
    if os.sep in name_or_path or name_or_path.endswith('.toml'):
        return load_file(name_or_path)
    path = os.path.join(profile_dir(), name_or_path + '.toml')
    if not os.path.exists(path):
        raise ConfigError('unknown profile %r (shipped: %s; or give a file path)'
                          % (name_or_path, ', '.join(shipped())))
    return load_file(path)


def resolve_target(prof, model):
    """Absolute target: W for power mode, TH/s for hashrate/efficiency, die C for thermal,
    heat W for heat."""
    if prof['target'] > 0:
        return prof['target']
    if prof['mode'] == 'thermal':
        return model['temp_hot_c'] - prof['temp_margin_c']
    if prof['mode'] in ('power', 'heat'):
        return prof['target_rel'] * model['nameplate_w']
    nominal_ths = (model['boards'] * model['chips_per_board'] * model['cores_per_chip']
                   * model['f_nom_mhz'] * 1e6 / 1e12)
    return prof['target_rel'] * nominal_ths


POWER_FLOOR_SHARE = 0.2    # lowest wall target: 20 % of the nameplate (below it the boards'
                           # fixed draw is most of the power and J/TH means little)


def power_range_w(model, limit_w=None):
    """Wall-power targets a rig accepts: POWER_FLOOR_SHARE of the nameplate up to its power limit
    (limit_w, else the model's)."""
    return round(POWER_FLOOR_SHARE * model['nameplate_w']), limit_w or model['power_limit_w']


def target_unit(mode):
    """Unit of a mode's target: watts (power, heat), die C (thermal), else TH/s (as
    agent/telemetry.tuner_view labels it; telemetry keeps its own copy: the MicroPython port
    loads telemetry and not this module)."""
    return 'W' if mode in ('power', 'heat') else 'C' if mode == 'thermal' else 'TH/s'
