"""Safety supervisor settings: the [safety] config section, model-derived limits. Pure.

Times in physics seconds, temperatures in degC, caps in % of the requested frequency.
A 0 for a model key (temp_*_c, power_limit_w, fan_rpm_max) means "the model's value".
"""

from agent import options

_o = options.opt
# key -> model dict key, for the options whose 0 means "take the model's value"
MODEL_KEYS = {'temp_target_c': 'temp_target_c', 'temp_hot_c': 'temp_hot_c',
              'temp_danger_c': 'temp_danger_c', 'power_limit_w': 'power_limit_w',
              'fan_rpm_max': 'rpm_max'}


DIE_STALE_DEFAULT_S = 10.0   # without a poll period to derive it from


def _check(sec):
    """Cross-key rules; with model keys still 0 (auto) only what is known is compared."""
    def bad(key, why):
        raise sec.error(key, '%s %s' % (sec.label(key), why))
    hot, danger, target = sec['temp_hot_c'], sec['temp_danger_c'], sec['temp_target_c']
    if hot and danger and hot >= danger:
        bad('temp_hot_c', 'must be below %s (%s >= %s)' % (sec.label('temp_danger_c'), hot, danger))
    if target and hot and target >= hot:
        bad('temp_target_c', 'must be below %s (%s >= %s)' % (sec.label('temp_hot_c'), target, hot))
    if hot and sec['hysteresis_c'] >= hot - sec['sensor_min_c']:
        bad('hysteresis_c', 'too large for temp_hot_c %s' % hot)
    if sec['die_min_c'] >= sec['die_max_c']:
        bad('die_min_c', 'must be below die_max_c')
    if sec['sensor_min_c'] >= sec['sensor_max_c']:
        bad('sensor_min_c', 'must be below sensor_max_c')
    if sec['recover_start_pct'] < sec['cap_min_pct']:
        bad('recover_start_pct', 'must not be below cap_min_pct')


SECTION = options.section('safety', [
    _o('temp_target_c', 'float', 0.0, 'fan PID target; 0 = model default', 20.0, 120.0, auto=0.0),
    _o('temp_hot_c', 'float', 0.0, 'derate at/above; 0 = model default', 30.0, 130.0, auto=0.0),
    _o('temp_danger_c', 'float', 0.0, 'board off at/above; 0 = model default (never higher)',
       40.0, 130.0, auto=0.0),
    _o('power_limit_w', 'float', 0.0, 'input power limit; 0 = model default (never higher)',
       1.0, 20000.0, auto=0.0),
    _o('control_source', 'str', 'die', 'fan PID follows the hottest die or board sensor',
       choices=('die', 'board')),
    _o('watchdog_s', 'float', 10.0, 'control loop stalled that long (wall time) -> safe state',
       2.0, 600.0),
    _o('hysteresis_c', 'float', 5.0, 'recover below temp_hot_c minus this ...', 0.5, 20.0),
    _o('hold_s', 'float', 60.0, '... held that long (hold-off)', 0.0, 3600.0),
    _o('derate_step_pct', 'float', 5.0, 'cap step, down while hot, up while recovering', 1.0, 50.0),
    _o('derate_interval_s', 'float', 10.0, 'one step down per interval while hot', 1.0, 600.0),
    _o('recover_interval_s', 'float', 10.0, 'one step up per interval while recovering', 1.0, 600.0),
    _o('cap_min_pct', 'float', 30.0, 'thermal derating floor; an airflow cap below it = off',
       5.0, 100.0),
    _o('recover_start_pct', 'float', 50.0, 'cap a board restarts at after a dangerous trip',
       5.0, 100.0),
    _o('max_trips', 'int', 3, 'dangerous trips within trip_window_s -> latched off', 1, 100),
    _o('trip_window_s', 'float', 3600.0, 'window of max_trips', 1.0, 604800.0),
    _o('trend_lead_s', 'float', 5.0, 'trip early if die + rise rate x lead reaches dangerous',
       0.0, 60.0),
    _o('trend_span_s', 'float', 2.0, 'die rise rate measured over this span', 0.5, 30.0),
    _o('blind_max_s', 'float', 10.0, 'enabled board with no temperature at all -> off', 1.0, 600.0),
    _o('enable_grace_s', 'float', 60.0, 'after (re)enable or start dies may be missing that long',
       0.0, 600.0),
    _o('dies_missing_s', 'float', 3.0, 'no die readable that long -> treated as hot', 0.0, 600.0),
    _o('dead_chip_s', 'float', 10.0, 'die missing that long -> dead-chip alarm', 0.0, 3600.0),
    _o('die_stale_s', 'float', 0.0, 'die reading older than this = no reading (hot); 0 = three '
       'chip poll periods, at least 10 s', 1.0, 1800.0, auto=0.0),
    _o('stale_off_s', 'float', 30.0, 'every die stale that long -> board off', 1.0, 3600.0),
    _o('die_min_c', 'float', -20.0, 'die readings below are not temperatures', -100.0, 50.0),
    _o('die_max_c', 'float', 150.0, 'die readings above are not temperatures', 80.0, 300.0),
    _o('sensors_per_board', 'int', 2, 'board temperature sensors per board', 0, 16),
    _o('sensor_min_c', 'float', -20.0, 'board sensor readings below = out of range', -100.0, 50.0),
    _o('sensor_max_c', 'float', 150.0, 'board sensor readings above = out of range', 80.0, 300.0),
    _o('stuck_window_s', 'float', 60.0, 'sensor unchanged that long ...', 5.0, 3600.0),
    _o('stuck_move_c', 'float', 3.0, '... while the dies moved this much -> stuck', 0.5, 50.0),
    _o('stuck_epsilon_c', 'float', 0.0, 'changes up to this count as "unchanged"', 0.0, 5.0),
    _o('stuck_peer_changes', 'int', 10, '... or while a board-mate changed that often (0 = off)',
       0, 10000),
    _o('sensor_disagree_c', 'float', 30.0, 'sensor below the coldest die by more (0 = off) ...',
       0.0, 100.0),
    _o('sensor_disagree_s', 'float', 10.0, '... that long -> implausible', 0.0, 600.0),
    _o('sensor_fault_cap_pct', 'float', 85.0, 'frequency cap while a board sensor is distrusted',
       5.0, 100.0),
    _o('sensor_clear_s', 'float', 30.0, 'a flagged sensor must look fine this long', 0.0, 3600.0),
    _o('fan_rpm_max', 'float', 0.0, 'fan full speed; 0 = model default', 100.0, 100000.0, auto=0.0),
    _o('fan_lag_s', 'float', 2.0, 'fan speed follows a duty change within', 0.1, 60.0),
    _o('fan_min_ratio', 'float', 0.5, 'rpm below this x expected -> stopped', 0.05, 0.95),
    _o('fan_min_expect_pct', 'float', 10.0, 'no stopped-check below this expected speed',
       1.0, 100.0),
    _o('fan_over_ratio', 'float', 1.2, 'rpm above fan_rpm_max x this -> implausible', 1.0, 3.0),
    _o('fan_unreadable_s', 'float', 10.0, 'tach unreadable that long -> lost (dies guard meanwhile)',
       0.0, 600.0),
    _o('fan_clear_s', 'float', 10.0, 'a lost fan must look fine this long', 0.0, 3600.0),
    _o('airflow_exp', 'float', 0.8, 'cap = 100 x (fans left / fans) ^ airflow_exp', 0.1, 2.0),
    _o('power_interval_s', 'float', 5.0, 'power cap changes at most that often', 1.0, 600.0),
    _o('power_margin_pct', 'float', 2.0, 'aim this far under the limit', 0.0, 20.0),
    _o('power_unreadable_s', 'float', 10.0, 'power unreadable that long -> alarm', 0.0, 3600.0),
    _o('cooling', 'str', 'air', 'air (fans) or immersion (no fans: fan faults not alarmed, fan '
       'outputs held at 0 %; the dies still derate and trip)', choices=('air', 'immersion')),
    _o('coolant_c', 'float', 0.0, 'immersion: coolant temperature, the rig\'s ambient (telemetry; '
       'set_coolant updates it); 0 = not known', -20.0, 90.0, auto=0.0),
], check=_check)


def build(model, config=None):
    """Validated settings (a Section plus 'fan': dict) for `model`; ValueError names the key.

    `config`: the [safety] section or any dict of its keys (None values = default), plus an
    optional 'fan' dict for FanControl.from_config.
    """
    if not isinstance(model, dict):
        raise ValueError('model: expected a model dict (hal.models.get(name))')
    for k in ('boards', 'fans', 'chips_per_board', 'rpm_max', 'temp_target_c', 'temp_hot_c',
              'temp_danger_c', 'power_limit_w'):
        if k not in model:
            raise ValueError('model.%s missing' % k)
    config = {} if config is None else config
    if not isinstance(config, dict):
        raise ValueError('safety config: expected a dict')
    raw = {}
    for k in config:
        if k != 'fan' and config[k] is not None:
            raw[k] = config[k]
    cfg = options.build(SECTION, raw)
    for key in MODEL_KEYS:
        if cfg.is_auto(key):
            cfg[key] = float(model[MODEL_KEYS[key]])
    if cfg.is_auto('die_stale_s'):
        cfg['die_stale_s'] = DIE_STALE_DEFAULT_S
    for key in ('temp_danger_c', 'power_limit_w'):
        if cfg[key] > model[key]:
            raise cfg.error(key, '%s = %s: above the model limit %s'
                            % (cfg.label(key), cfg[key], model[key]))
    _check(cfg)
    fan = config.get('fan')
    if fan is not None and not isinstance(fan, dict):
        raise ValueError('fan: expected a dict')
    cfg['fan'] = dict(fan or {})
    return cfg
