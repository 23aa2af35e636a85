"""SysfsBoardController against a fake sysfs tree in tmp_path."""

import pytest

from hal import families, models
from hal.board import BoardError
from hal.board_sysfs import SysfsBoardController
from hal.limits import HardwareLimits, LimitError


def put(root, rel, text):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def make_tree(root):
    """Fake sysfs tree of an S21 control board under root; returns the mapping."""
    for b in range(3):
        put(root, 'hwmon0/temp%d_input' % (2 * b + 1), '%d\n' % (40000 + b * 1000))
        put(root, 'hwmon0/temp%d_input' % (2 * b + 2), '%d\n' % (55500 + b * 1000))
        put(root, 'gpio/board%d/value' % b, '1\n')
    for f in range(4):
        put(root, 'hwmon1/pwm%d' % (f + 1), '128\n')
        put(root, 'hwmon1/pwm%d_enable' % (f + 1), '2\n')
        put(root, 'hwmon1/fan%d_input' % (f + 1), '%d\n' % (3000 + f))
    put(root, 'regulator/vout_uv', '14400000\n')
    put(root, 'hwmon2/in1_input', '14380\n')
    put(root, 'hwmon3/power1_input', '3517000000\n')
    put(root, 'eeprom/board1', 'SN-B1\n')
    return {
        'model': 'S21', 'voltage_per': 'rig', 'rpm_max': 6000,
        'temps': [['hwmon0/temp%d_input' % (2 * b + 1), 'hwmon0/temp%d_input' % (2 * b + 2)]
                  for b in range(3)],
        'fans': [{'pwm': 'hwmon1/pwm%d' % i, 'enable': 'hwmon1/pwm%d_enable' % i,
                  'rpm': 'hwmon1/fan%d_input' % i} for i in range(1, 5)],
        'voltage': [{'set': 'regulator/vout_uv', 'set_scale': 1000, 'read': 'hwmon2/in1_input'}],
        'enable': ['gpio/board%d/value' % b for b in range(3)],
        'power': 'hwmon3/power1_input',
        'board_ids': ['SN-B0', 'eeprom/board1', 'SN-B2'],
    }


@pytest.fixture
def tree(tmp_path):
    mapping = make_tree(tmp_path)
    lim = HardwareLimits(models.get('S21'), families.get('BM1368'))
    return tmp_path, SysfsBoardController(str(tmp_path), mapping, lim)


def test_reads(tree):
    root, bc = tree
    info = bc.info()
    assert info['boards'] == 3 and info['fans'] == 4 and info['sensors_per_board'] == 2
    assert bc.read_temps_c(1) == [41.0, 56.5]
    assert bc.read_fans()[2] == {'duty_pct': 50, 'rpm': 3002}
    assert bc.read_voltage(0) == {'setpoint_mv': 14400, 'readback_mv': 14380, 'enabled': True}
    assert bc.read_power_w() == pytest.approx(3517.0)
    assert bc.board_id(1) == 'SN-B1' and bc.board_id(0) == 'SN-B0'


def test_fan_writes_pwm_and_manual_mode(tree):
    root, bc = tree
    bc.set_fan_duty(None, 100)
    assert (root / 'hwmon1/pwm3').read_text().strip() == '255'
    assert (root / 'hwmon1/pwm3_enable').read_text().strip() == '1'
    bc.set_fan_duty(0, 20)
    assert (root / 'hwmon1/pwm1').read_text().strip() == '51'
    assert bc.read_fans()[0]['duty_pct'] == 20


def test_limits_refuse_before_anything_is_written(tree):
    root, bc = tree
    before = (root / 'regulator/vout_uv').read_text()
    with pytest.raises(LimitError):
        bc.set_voltage_mv(None, 16000)
    with pytest.raises(LimitError):
        bc.set_fan_duty(0, 120)
    with pytest.raises(BoardError):
        bc.set_fan_duty(7, 50)
    with pytest.raises(BoardError):
        bc.set_voltage_mv(1, 14000)        # shared rail: board index refused
    assert (root / 'regulator/vout_uv').read_text() == before
    assert (root / 'hwmon1/pwm1').read_text().strip() == '128'
    bc.set_voltage_mv(None, 13500)
    assert (root / 'regulator/vout_uv').read_text().strip() == '13500000'


def test_enable_and_failed_sensor(tree):
    root, bc = tree
    bc.set_enabled(2, False)
    assert bc.read_voltage(2)['enabled'] is False
    assert (root / 'gpio/board2/value').read_text().strip() == '0'
    (root / 'hwmon0/temp2_input').unlink()
    put(root, 'hwmon0/temp1_input', 'garbage\n')
    assert bc.read_temps_c(0) == [None, None]
    st = bc.get_status()
    assert st['boards'][0]['temps_c'] == [None, None] and st['power_w'] == pytest.approx(3517.0)
