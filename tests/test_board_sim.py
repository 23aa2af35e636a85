"""SimBoardController round trips against the simulator's board controller (real pty)."""

import pytest

from hal import board_protocol as bp, families, models
from hal.board import BoardError
from hal.board_sim import SimBoardController
from hal.limits import HardwareLimits, LimitError
from hal.transport import Transport
from tests.simproc import start_sim


@pytest.fixture(scope='module')
def s21():
    with start_sim('S21', time_scale=10.0) as sim:
        lim = HardwareLimits(models.get('S21'), families.get('BM1368'))
        bc = SimBoardController(Transport(sim.ports['board']), lim, timeout_s=0.3)
        yield bc
        bc.close()


def test_info_and_identity(s21):
    info = s21.info()
    assert info == {'boards': 3, 'fans': 4, 'sensors_per_board': 2, 'voltage_per': 'rig',
                    'rpm_max': 6000, 'model': 'S21'}
    ids = [s21.board_id(b) for b in range(3)]
    assert len(set(ids)) == 3 and all(ids)


def test_fans_round_trip(s21):
    s21.set_fan_duty(None, 40)
    s21.set_fan_duty(2, 70)
    fans = s21.read_fans()
    assert [f['duty_pct'] for f in fans] == [40, 40, 70, 40]
    assert all(0 <= f['rpm'] <= 6100 for f in fans)


def test_voltage_enable_temps_power(s21):
    s21.set_voltage_mv(None, 14000)
    v = s21.read_voltage(1)
    assert v['setpoint_mv'] == 14000 and v['enabled'] is True
    s21.set_enabled(1, False)
    assert s21.read_voltage(1)['enabled'] is False
    s21.set_enabled(None, True)
    assert s21.read_voltage(1)['enabled'] is True
    temps = s21.read_temps_c(0)
    assert len(temps) == 2 and all(t is None or -20 < t < 150 for t in temps)
    assert s21.read_power_w() > 0


def test_limits_refuse_before_any_byte_is_sent(s21):
    before = s21.transport.tx_bytes
    with pytest.raises(LimitError):
        s21.set_voltage_mv(None, 20000)
    with pytest.raises(LimitError):
        s21.set_fan_duty(0, 101)
    with pytest.raises(BoardError):
        s21.set_voltage_mv(0, 14000)           # one shared rail on an S21
    with pytest.raises(BoardError):
        s21.set_fan_duty(9, 50)
    assert s21.transport.tx_bytes == before


def test_non_ok_status_is_a_clear_error(s21):
    with pytest.raises(BoardError, match='unknown command'):
        s21.request(0x7E)
    with pytest.raises(BoardError, match='bad argument'):
        s21.request(bp.GET_TEMPS, bytes([9]))
    assert s21.read_fans()                     # link still fine afterwards


def test_timeout_and_retries_on_a_silent_port():
    t = Transport('loop://')                   # echoes our own request: never a valid reply
    bc = SimBoardController(t, None, timeout_s=0.05, retries=1)
    with pytest.raises(BoardError, match='no reply'):
        bc.info()
    assert bc.timeouts == 2
