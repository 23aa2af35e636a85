"""Bitaxe board parts: number formats, the drivers (hal/bitaxe/) against the simulator's
register-level parts over a real pty (I2C_XFER), and BitaxeBoardController on a simulated Gamma."""

import random
import time

import pytest

from hal import board_protocol as bp, families, models
from hal.bitaxe import ds4432u, emc2101, ina260, pmbus, tps546
from hal.board import BoardError
from hal.board_bitaxe import BitaxeBoardController
from hal.board_i2c import BoardI2C
from hal.board_sim import SimBoardController
from hal.limits import HardwareLimits, LimitError
from hal.sim import i2cparts
from hal.sim.rig import SimRig
from hal.transport import Transport
from tests.simproc import start_sim

GAMMA = models.get('GAMMA')


def test_pmbus_formats_round_trip():
    for v in (0.0, 0.5, 3.2, 4.97, 12.0, -1.5, 25.0, 0.0123):
        assert abs(pmbus.linear11_to_float(pmbus.float_to_linear11(v)) - v) <= abs(v) / 512 + 1e-4
    assert pmbus.linear11_to_float(0xD340) == 13.0      # exponent 0b11010 = -6, mantissa 832
    assert pmbus.vout_exponent(0x17) == -9
    assert pmbus.float_to_ulinear16(1.15, 0x17) == 589
    assert pmbus.word_le(pmbus.le_word(0xBEEF)) == 0xBEEF


def test_emc2101_scaling():
    assert [emc2101.duty_to_setting(p) for p in (0, 50, 100, 150, -5)] == [0, 32, 63, 63, 0]
    assert emc2101.tach_to_rpm(0xFFFF) == 0 and emc2101.tach_to_rpm(1350) == 4000
    assert emc2101.ext_to_c(*emc2101.c_to_ext(61.25)) == 61.25
    assert emc2101.ext_to_c(*emc2101.c_to_ext(-10.5)) == -10.5
    assert emc2101.ext_to_c(*emc2101.c_to_ext(None)) is None


def test_ds4432u_transfer_function_is_monotonic_and_inverts():
    codes = [ds4432u.code_for_v(v / 1000.0) for v in range(1000, 1400, 50)]
    volts = [ds4432u.v_for_code(c) for c in codes]
    assert volts == sorted(volts)
    for v, back in zip(range(1000, 1400, 50), volts):
        assert abs(back * 1000 - v) < 3.0          # one DAC step is ~2.9 mV here
    with pytest.raises(ValueError):
        ds4432u.code_for_v(2.5)


class FakeBus:
    """The simulated parts called directly (no pty): machine.I2C's three methods."""

    def __init__(self, parts):
        self.bus = i2cparts.build_bus(SimRig(GAMMA, seed=3), random.Random(1), parts)

    def readfrom_mem(self, addr, reg, n):
        ok, data = i2cparts.transfer(self.bus, addr, n, bytes([reg]))
        if not ok:
            raise OSError(19, 'ENODEV')
        return data

    def writeto_mem(self, addr, reg, buf):
        if not i2cparts.transfer(self.bus, addr, 0, bytes([reg]) + bytes(buf))[0]:
            raise OSError(19, 'ENODEV')

    def writeto(self, addr, buf):
        if not i2cparts.transfer(self.bus, addr, 0, bytes(buf))[0]:
            raise OSError(19, 'ENODEV')


def test_older_board_parts_ds4432u_and_ina260():
    bus = FakeBus(('EMC2101', 'DS4432U', 'INA260'))
    rig = bus.bus[ds4432u.ADDR].rig
    model = dict(GAMMA, i2c_parts=('EMC2101', 'DS4432U', 'INA260'))
    bc = BitaxeBoardController(bus, model, HardwareLimits(model, families.get('BM1370')))
    bc.init()
    bc.set_voltage_mv(0, 1200)
    assert abs(rig.board_mv[0] - 1200) <= 3
    assert abs(bc.read_voltage(0)['setpoint_mv'] - 1200) <= 3
    w = bc.read_power_w()
    assert abs(w - rig.wall_w()) <= 0.05 * rig.wall_w() + 0.02
    assert ina260.INA260(bus).bus_mv() == pytest.approx(5000, abs=2)


def test_tps546_refuses_outside_its_window_and_part_missing_is_an_error():
    bus = FakeBus(('EMC2101', 'TPS546'))
    reg = tps546.TPS546(bus)
    reg.init()
    with pytest.raises(ValueError):
        reg.set_vout_mv(2500)
    with pytest.raises(OSError):
        ina260.INA260(bus).init()                   # nobody at 0x40: NACK


@pytest.fixture(scope='module')
def gamma():
    # --warm: the BM1370 was brought up (0x54 = 2 routes its diode to the EMC2101)
    with start_sim('GAMMA', time_scale=10.0, extra=['--warm']) as sim:
        lim = HardwareLimits(GAMMA, families.get('BM1370'))
        ctl = SimBoardController(Transport(sim.ports['board']), lim, timeout_s=0.3)
        bus = BoardI2C(ctl)
        board = BitaxeBoardController(bus, GAMMA, lim, identity=lambda: ctl.board_id(0),
                                      heartbeat=ctl.set_heartbeat_watchdog)
        board.init()
        yield sim, ctl, bus, board
        ctl.close()


@pytest.mark.e2e
def test_gamma_parts_over_the_board_pty(gamma):
    sim, ctl, bus, board = gamma
    assert board.info()['fans'] == 1 and board.board_id(0).startswith('GAMMA-')
    board.set_fan_duty(0, 40)
    assert board.read_fans()[0]['duty_pct'] == 40
    # Controller view (GET_FANS) agrees with the EMC2101's register: one fan, one truth.
    assert ctl.read_fans()[0]['duty_pct'] == 40
    board.set_voltage_mv(0, 1200)
    v = board.read_voltage(0)
    assert abs(v['setpoint_mv'] - 1200) <= 2 and abs(v['readback_mv'] - 1200) <= 10 and v['enabled']
    assert ctl.read_voltage(0)['setpoint_mv'] == v['setpoint_mv']
    air_c, die_c = board.read_temps_c(0)
    assert 15 < air_c < 90 and 20 < die_c < 110
    w = board.read_power_w()
    assert 5 < w < 40
    board.set_fan_duty(0, 100)
    time.sleep(1.0)
    assert board.read_fans()[0]['rpm'] > 1000


@pytest.mark.e2e
def test_gamma_limits_and_nack(gamma):
    sim, ctl, bus, board = gamma
    with pytest.raises(LimitError):
        board.set_voltage_mv(0, 1400)                # HardwareLimits (GAMMA 1000..1300 mV)
    with pytest.raises(OSError, match='NACK'):
        bus.readfrom_mem(0x40, 0x00, 2)              # no INA260 on a Gamma
    with pytest.raises(BoardError):
        ctl.request(bp.I2C_XFER, b'\x24')            # malformed transfer: refused, not crashed


@pytest.mark.e2e
def test_gamma_regulator_off_and_on(gamma):
    sim, ctl, bus, board = gamma
    board.set_enabled(0, False)
    assert board.read_voltage(0) == {'setpoint_mv': board.read_voltage(0)['setpoint_mv'],
                                     'readback_mv': 0, 'enabled': False}
    assert ctl.read_voltage(0)['enabled'] is False
    board.set_enabled(0, True)
    assert board.read_voltage(0)['enabled'] is True
