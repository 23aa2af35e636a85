"""Safety supervisor settings: defaults, model-derived limits, strict validation. Pure."""

from agent.fan import _num

# key: (default, min, max). None default = taken from the model (or 0/None in config = model).
# Times in physics seconds, temperatures in degC, caps in % of the requested frequency.
DEFAULTS = {
    'temp_target_c': (None, 20.0, 120.0),     # fan PID target (model temp_target_c)
    'temp_hot_c': (None, 30.0, 130.0),        # derate at/above (model temp_hot_c)
    'temp_danger_c': (None, 40.0, 130.0),     # board off at/above (model temp_danger_c; never higher)
    'power_limit_w': (None, 1.0, 20000.0),    # PSU input limit (model power_limit_w; never higher)
    'hysteresis_c': (5.0, 0.5, 20.0),         # recover below hot - hysteresis_c ...
    'hold_s': (60.0, 0.0, 3600.0),            # ... held that long (hold-off)
    'derate_step_pct': (5.0, 1.0, 50.0),      # cap step, down while hot, up while recovering
    'derate_interval_s': (10.0, 1.0, 600.0),  # one step down per interval while hot
    'recover_interval_s': (10.0, 1.0, 600.0), # one step up per interval while recovering
    'cap_min_pct': (30.0, 5.0, 100.0),        # thermal derating floor; airflow cap below it = off
    'recover_start_pct': (50.0, 5.0, 100.0),  # cap a board restarts at after a dangerous trip
    'max_trips': (3, 1, 100),                 # dangerous trips within trip_window_s -> latched off
    'trip_window_s': (3600.0, 1.0, 604800.0),
    'trend_lead_s': (5.0, 0.0, 60.0),         # trip early if die + rate * lead reaches dangerous
    'trend_span_s': (2.0, 0.5, 30.0),         # die rise rate measured over this span
    'blind_max_s': (10.0, 1.0, 600.0),        # enabled board with no temperature at all -> off
    'enable_grace_s': (60.0, 0.0, 600.0),     # after (re)enable/start: dies may be missing
    'dies_missing_s': (3.0, 0.0, 600.0),      # no die readable that long -> treated as hot
    'dead_chip_s': (10.0, 0.0, 3600.0),       # die missing that long -> dead-chip alarm
    'die_stale_s': (10.0, 1.0, 1800.0),       # die reading older than this = no reading (hot)
    'stale_off_s': (30.0, 1.0, 3600.0),       # every die stale that long -> board off
    'die_min_c': (-20.0, -100.0, 50.0),       # die readings outside are not temperatures
    'die_max_c': (150.0, 80.0, 300.0),
    'sensors_per_board': (2, 0, 16),
    'sensor_min_c': (-20.0, -100.0, 50.0),    # board sensor readings outside = out of range
    'sensor_max_c': (150.0, 80.0, 300.0),
    'stuck_window_s': (60.0, 5.0, 3600.0),    # sensor unchanged that long ...
    'stuck_move_c': (3.0, 0.5, 50.0),         # ... while the dies moved this much -> stuck
    'stuck_epsilon_c': (0.0, 0.0, 5.0),       # changes up to this count as "unchanged"
    'stuck_peer_changes': (10, 0, 10000),     # ... or while a board-mate changed that often (0 = off)
    'sensor_disagree_c': (30.0, 0.0, 100.0),  # sensor below coldest die by more (0 = off) ...
    'sensor_disagree_s': (10.0, 0.0, 600.0),  # ... that long -> implausible
    'sensor_fault_cap_pct': (85.0, 5.0, 100.0),
    'sensor_clear_s': (30.0, 0.0, 3600.0),    # a flagged sensor must look fine this long
    'fan_rpm_max': (None, 100.0, 100000.0),   # model rpm_max
    'fan_lag_s': (2.0, 0.1, 60.0),
    'fan_min_ratio': (0.5, 0.05, 0.95),       # rpm below this x expected -> stopped
    'fan_min_expect_pct': (10.0, 1.0, 100.0), # no stopped-check below this expected speed
    'fan_over_ratio': (1.2, 1.0, 3.0),        # rpm above rpm_max x this -> implausible
    'fan_unreadable_s': (10.0, 0.0, 600.0),   # tach unreadable that long -> lost (dies guard meanwhile)
    'fan_clear_s': (10.0, 0.0, 3600.0),
    'airflow_exp': (0.8, 0.1, 2.0),           # cap = 100 x (fans left / fans)^airflow_exp
    'power_interval_s': (5.0, 1.0, 600.0),    # power cap changes at most that often
    'power_margin_pct': (2.0, 0.0, 20.0),     # aim this far under the limit
    'power_unreadable_s': (10.0, 0.0, 3600.0),
    'watchdog_s': (10.0, 1.0, 600.0),         # for the runner's Watchdog(timeout_s)
}
INT_KEYS = ('max_trips', 'sensors_per_board', 'stuck_peer_changes')
MODEL_KEYS = {'temp_target_c': 'temp_target_c', 'temp_hot_c': 'temp_hot_c',
              'temp_danger_c': 'temp_danger_c', 'power_limit_w': 'power_limit_w',
              'fan_rpm_max': 'rpm_max'}
OTHER_KEYS = ('fan', 'control_source')


def build(model, config=None):
    """Validated flat settings dict; ValueError names the offending key."""
    if not isinstance(model, dict):
        raise ValueError('model: expected a model dict (hal.models.get(name))')
    for k in ('boards', 'fans', 'chips_per_board', 'rpm_max', 'temp_target_c', 'temp_hot_c',
              'temp_danger_c', 'power_limit_w'):
        if k not in model:
            raise ValueError('model.%s missing' % k)
    config = {} if config is None else config
    if not isinstance(config, dict):
        raise ValueError('safety config: expected a dict')
    for k in config:
        if k not in DEFAULTS and k not in OTHER_KEYS:
            raise ValueError('%s: unknown safety setting' % (k,))
    cfg = {}
    for k in DEFAULTS:
        default, lo, hi = DEFAULTS[k]
        v = config.get(k)
        if k in MODEL_KEYS and (v is None or (_num(v) == 0.0)):
            v = model[MODEL_KEYS[k]]
        elif v is None:
            v = default
        f = _num(v)
        if f is None:
            raise ValueError('%s = %r: expected a number' % (k, v))
        if k in INT_KEYS and f != int(f):
            raise ValueError('%s = %r: expected an integer' % (k, v))
        if f < lo or f > hi:
            raise ValueError('%s = %r: outside %s..%s' % (k, v, lo, hi))
        cfg[k] = int(f) if k in INT_KEYS else f
    if cfg['temp_danger_c'] > model['temp_danger_c']:
        raise ValueError('temp_danger_c = %s: above the model limit %s' % (cfg['temp_danger_c'],
                                                                          model['temp_danger_c']))
    if cfg['power_limit_w'] > model['power_limit_w']:
        raise ValueError('power_limit_w = %s: above the model limit %s' % (cfg['power_limit_w'],
                                                                          model['power_limit_w']))
    if cfg['temp_hot_c'] >= cfg['temp_danger_c']:
        raise ValueError('temp_hot_c (%s) must be below temp_danger_c (%s)'
                         % (cfg['temp_hot_c'], cfg['temp_danger_c']))
    if cfg['temp_target_c'] >= cfg['temp_hot_c']:
        raise ValueError('temp_target_c (%s) must be below temp_hot_c (%s)'
                         % (cfg['temp_target_c'], cfg['temp_hot_c']))
    if cfg['hysteresis_c'] >= cfg['temp_hot_c'] - cfg['sensor_min_c']:
        raise ValueError('hysteresis_c too large for temp_hot_c')
    if cfg['die_min_c'] >= cfg['die_max_c']:
        raise ValueError('die_min_c must be below die_max_c')
    if cfg['sensor_min_c'] >= cfg['sensor_max_c']:
        raise ValueError('sensor_min_c must be below sensor_max_c')
    if cfg['recover_start_pct'] < cfg['cap_min_pct']:
        raise ValueError('recover_start_pct must not be below cap_min_pct')
    src = config.get('control_source', 'die')
    if src not in ('die', 'board'):
        raise ValueError("control_source = %r: expected 'die' or 'board'" % (src,))
    cfg['control_source'] = src
    fan = config.get('fan')
    if fan is not None and not isinstance(fan, dict):
        raise ValueError('fan: expected a dict')
    cfg['fan'] = dict(fan or {})
    return cfg
