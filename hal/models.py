"""Registry of rig models (shared/spec/sim-physics.md table) plus their safety defaults. Pure data."""

MODELS = {
    'S19JPRO': {
        'chip': 'BM1362', 'boards': 3, 'chips_per_board': 126, 'domains_per_board': 42,
        'cores_per_chip': 504, 'f_nom_mhz': 525.0, 'stock_board_mv': 13500,
        'nameplate_w': 3050.0, 'fans': 4, 'fan_w': 25.0, 'ctrl_w': 8.0, 'board_w': 5.0,
        'voltage_per': 'rig', 'rpm_max': 6000, 'voltage_step_mv': 10,
        'board_mv_min': 11500, 'board_mv_max': 14500, 'freq_max_mhz': 735.0,
        'temp_target_c': 75.0, 'temp_hot_c': 85.0, 'temp_danger_c': 95.0,
        'power_limit_w': 3600.0,
    },
    'S21': {
        'chip': 'BM1368', 'boards': 3, 'chips_per_board': 108, 'domains_per_board': 12,
        'cores_per_chip': 1276, 'f_nom_mhz': 490.0, 'stock_board_mv': 14400,
        'nameplate_w': 3500.0, 'fans': 4, 'fan_w': 30.0, 'ctrl_w': 8.0, 'board_w': 5.0,
        'voltage_per': 'rig', 'rpm_max': 6000, 'voltage_step_mv': 10,
        'board_mv_min': 12000, 'board_mv_max': 15500, 'freq_max_mhz': 700.0,
        'temp_target_c': 75.0, 'temp_hot_c': 85.0, 'temp_danger_c': 95.0,
        'power_limit_w': 4000.0,
    },
    'GAMMA': {
        'chip': 'BM1370', 'boards': 1, 'chips_per_board': 1, 'domains_per_board': 1,
        'cores_per_chip': 2040, 'f_nom_mhz': 525.0, 'stock_board_mv': 1150,
        'nameplate_w': 18.0, 'fans': 1, 'fan_w': 1.5, 'ctrl_w': 1.5, 'board_w': 0.3,
        'voltage_per': 'board', 'rpm_max': 5000, 'voltage_step_mv': 1,
        'board_mv_min': 1000, 'board_mv_max': 1300, 'freq_max_mhz': 800.0,
        'temp_target_c': 65.0, 'temp_hot_c': 75.0, 'temp_danger_c': 85.0,
        'power_limit_w': 30.0,
        # Board parts on I2C (docs/bitaxe-parts.md); the simulator's board controller serves
        # them through I2C_XFER. power_offset_w: the board beyond the regulator's output
        # (ESP-Miner FamilyConfig Gamma power_offset), added to VOUT x IOUT.
        'i2c_parts': ('EMC2101', 'TPS546'), 'power_offset_w': 5.0,
        'die_diode_sensor': 1,   # EMC2101-style external channel reads the BM1370 die diode
    },
}

for _name in MODELS:
    MODELS[_name]['name'] = _name


def get(name):
    model = MODELS.get(name.upper()) if isinstance(name, str) else None
    if model is None:
        raise KeyError('unknown rig model %r (known: %s)' % (name, ', '.join(sorted(MODELS))))
    return model


def chips_total(model):
    return model['boards'] * model['chips_per_board']


def chip_v_nom(model):
    """Stock chip voltage: board voltage over the number of series domains."""
    return model['stock_board_mv'] / 1000.0 / model['domains_per_board']
