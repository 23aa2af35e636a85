"""Tune profiles: strict TOML (unknown keys, wrong types, out-of-range values stop with a message
naming the key and line), shipped profiles in agent/profiles/, user files by path.
"""

import os
import tomllib

from agent.config import ConfigError, _coerce, _line_index

PROFILE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'profiles')


def _opt(kind, default, help_text, lo=None, hi=None, choices=None):
    return {'kind': kind, 'default': default, 'help': help_text, 'lo': lo, 'hi': hi,
            'choices': choices}


SCHEMA = {
    'description': _opt('str', '', 'one line shown by `hashpilot tune --list`'),
    'mode': _opt('str', 'power', 'power: most hashes at target W; hashrate: least W at target '
                 'TH/s; efficiency: best J/TH with target as the TH/s floor',
                 choices=('power', 'hashrate', 'efficiency')),
    'target': _opt('float', 0.0, 'W (power) or TH/s (hashrate, efficiency floor); 0 = use '
                   'target_rel', 0.0, 100000.0),
    'target_rel': _opt('float', 1.0, 'target as a fraction of nameplate W (power) or of nominal '
                       'TH/s (hashrate, efficiency) when target = 0', 0.05, 1.5),
    'err_target_pct': _opt('float', 0.2, 'per-chip error rate the search aims at', 0.01, 2.0),
    'err_max_pct': _opt('float', 0.8, 'a chip above this (statistically) is stepped down',
                        0.05, 5.0),
    'temp_margin_c': _opt('float', 3.0, 'keep every die this far below the hot limit', 0.0, 30.0),
    'board_mv_min': _opt('int', 0, 'lowest board voltage; 0 = hardware limit', 0, 20000),
    'board_mv_max': _opt('int', 0, 'highest board voltage; 0 = hardware limit', 0, 20000),
    'freq_min_mhz': _opt('float', 0.0, 'lowest chip frequency; 0 = hardware limit', 0.0, 1000.0),
    'freq_max_mhz': _opt('float', 0.0, 'highest chip frequency; 0 = hardware limit', 0.0, 1000.0),
    'power_tol_pct': _opt('float', 1.0, 'power (or hashrate) band around the target', 0.1, 10.0),
    'time_budget_s': _opt('float', 1800.0, 'give up searching (keep the best) after', 60.0,
                          86400.0),
    'settle_s': _opt('float', 45.0, 'wait after a voltage move before judging power', 5.0,
                     600.0),
    'verify_s': _opt('float', 120.0, 'steady-state verification before done', 10.0, 3600.0),
    'min_err_count': _opt('float', 8.0, 'errors expected at the target before a decision '
                          '(Poisson: 8 tells 0.1 % from 0.5 % with margin)', 2.0, 100.0),
    'retune_temp_c': _opt('float', 6.0, 'mean die temperature drift that triggers a re-tune',
                          1.0, 50.0),
}


def defaults():
    return dict((k, o['default']) for k, o in SCHEMA.items())


def validate(raw, where=None):
    """Check a dict of profile keys; return the full profile. Raises ConfigError naming the key."""
    where = where or (lambda key: 'profile')
    out = defaults()
    for key, value in raw.items():
        opt = SCHEMA.get(key)
        if opt is None:
            raise ConfigError('%s: unknown key %r (known: %s)'
                              % (where(key), key, ', '.join(SCHEMA)))
        try:
            v = _coerce(opt['kind'], value, False)
        except ValueError as e:
            raise ConfigError('%s: %s = %r: %s' % (where(key), key, value, e))
        if opt['choices'] is not None and v not in opt['choices']:
            raise ConfigError('%s: %s = %r: must be one of %s'
                              % (where(key), key, value, ', '.join(opt['choices'])))
        if (opt['lo'] is not None and v < opt['lo']) or (opt['hi'] is not None and v > opt['hi']):
            raise ConfigError('%s: %s = %r: out of range %s..%s'
                              % (where(key), key, value, opt['lo'], opt['hi']))
        out[key] = v
    if out['board_mv_min'] and out['board_mv_max'] and out['board_mv_min'] > out['board_mv_max']:
        raise ConfigError('%s: board_mv_min must not exceed board_mv_max' % where('board_mv_min'))
    if out['freq_min_mhz'] and out['freq_max_mhz'] and out['freq_min_mhz'] > out['freq_max_mhz']:
        raise ConfigError('%s: freq_min_mhz must not exceed freq_max_mhz' % where('freq_min_mhz'))
    if out['err_max_pct'] < out['err_target_pct']:
        raise ConfigError('%s: err_max_pct must not be below err_target_pct' % where('err_max_pct'))
    return out


def load_file(path):
    """A profile file: TOML with one [profile] table. Returns the profile dict (with 'name')."""
    try:
        with open(path, 'rb') as fh:
            text = fh.read().decode('utf-8')
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError('%s: cannot read profile: %s' % (path, e))
    lines = _line_index(text)

    def where(key):
        n = lines.get(('profile', key)) or lines.get(('profile', None))
        return '%s:%d' % (path, n) if n else path

    try:
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
        return sorted(f[:-5] for f in os.listdir(PROFILE_DIR) if f.endswith('.toml'))
    except OSError:
        return []


def load(name_or_path):
    """A shipped profile by name, or a user file by path."""
    if os.sep in name_or_path or name_or_path.endswith('.toml'):
        return load_file(name_or_path)
    path = os.path.join(PROFILE_DIR, name_or_path + '.toml')
    if not os.path.exists(path):
        raise ConfigError('unknown profile %r (shipped: %s; or give a file path)'
                          % (name_or_path, ', '.join(shipped())))
    return load_file(path)


def resolve_target(prof, model):
    """Absolute target: W for power mode, TH/s for hashrate/efficiency."""
    if prof['target'] > 0:
        return prof['target']
    if prof['mode'] == 'power':
        return prof['target_rel'] * model['nameplate_w']
    nominal_ths = (model['boards'] * model['chips_per_board'] * model['cores_per_chip']
                   * model['f_nom_mhz'] * 1e6 / 1e12)
    return prof['target_rel'] * nominal_ths
