"""Rig from a simulator ports file: start all three S21 chains, poll, board status, limits."""

import pytest

from hal.clock import Clock
from hal.limits import LimitError
from hal.rig import Rig
from tests.simproc import start_sim


def test_rig_start_poll_and_status():
    with start_sim('S21', time_scale=10.0) as sim:
        rig = Rig.from_ports_file(sim.ports_file)
        try:
            assert rig.clock.time_scale == 10.0 and rig.family['name'] == 'BM1368'
            assert rig.start() == [108, 108, 108]
            rig.poll()
            rig.clock.sleep(3.0)
            st = rig.poll()
            assert st['chips'] == 324 and st['chips_alive'] == 324
            assert len(st['board']['fans']) == 4 and st['board']['power_w'] > 1000
            nominal_ghs = 324 * 490e6 * 1276 / 1e9
            assert abs(st['hashrate_ghs'] / nominal_ghs - 1) < 0.03
            for ch in st['chains']:
                assert ch['initialised'] and ch['framer']['crc_errors'] == 0
            rig.set_frequency(420.0, board=2)
            rig.poll()
            rig.clock.sleep(3.0)
            st = rig.poll()
            b2 = st['chains'][2]['hashrate_ghs']
            b0 = st['chains'][0]['hashrate_ghs']
            assert abs(b2 / b0 - 420.0 / 490.0) < 0.03
            with pytest.raises(LimitError):
                rig.set_frequency(10.0)
            board = rig.board.get_status()
            assert board['info']['boards'] == 3 and len(board['boards']) == 3
            assert board['power_w'] > 1000 and not board['errors']
        finally:
            rig.close()


def test_rig_explicit_urls_gamma():
    with start_sim('GAMMA', time_scale=10.0) as sim:
        rig = Rig('GAMMA', sim.ports['chains'], sim.ports['board'], clock=Clock(10.0))
        try:
            # a fresh BM1370 keeps its die diode to itself: the board's diode channel is open
            assert rig.board.read_temps_c(0)[1] is None
            assert rig.start(freq_mhz=500.0) == [1]
            chip = rig.chains[0].chips[0]
            assert chip.addr == 0 and chip.freq_mhz == 500.0
            # bring-up routed it (0x54 = 2): the die temperature comes from the board's sensor
            rig.poll()
            assert chip.temp_c is not None and 20.0 < chip.temp_c < 100.0
            rig.board.set_voltage_mv(0, 1200)
            assert rig.board.read_voltage(0)['setpoint_mv'] == 1200
        finally:
            rig.close()


@pytest.mark.slow
def test_power_cycled_board_goes_dead_then_recovers():
    with start_sim('S21', time_scale=10.0) as sim:
        rig = Rig.from_ports_file(sim.ports_file)
        try:
            rig.start()
            drv = rig.chains[0]
            drv.poll()
            rig.board.set_enabled(0, False)
            for _ in range(3):
                st = drv.poll()
            assert st['alive'] == 0 and rig.chains[1].poll()['alive'] == 108
            rig.board.set_enabled(0, True)          # chips come back in their reset state
            assert rig.recover_chain(0) == 108
            assert drv.poll()['alive'] == 108       # the same Chip objects answer again
            rig.clock.sleep(3.0)
            st = drv.poll()
            assert abs(st['hashrate_ghs'] / (108 * 490e6 * 1276 / 1e9) - 1) < 0.03
        finally:
            rig.close()


def test_board_backend_comes_from_a_factory():
    """hal/rig.py imports no backend: the board URL goes to the factory it is given."""
    import hal.rig as rig_mod
    made = []

    def factory(url, limits, clock):
        made.append((url, limits.freq_max_mhz, clock.time_scale))
        return 'board-for-' + url
    r = rig_mod.Rig('S21', [], board_url='sim://board', board_factory=factory)
    assert r.board == 'board-for-sim://board' and made == [('sim://board', r.limits.freq_max_mhz, 1.0)]
    assert 'SimBoardController' not in vars(rig_mod)


# Starts real processes (simulator, agent, broker): left out of `make test-fast`.
pytestmark = pytest.mark.e2e
