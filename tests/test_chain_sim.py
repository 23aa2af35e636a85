"""ChainDriver against the simulator in its own process, through real ptys.

Scan/addressing of S21 boards, init + frequency change seen in the measured hashrate, corrupt
bytes and a dying chip seen (and survived) by the driver, the chain CLI.
"""

import json

import pytest

from hal import families, models
from hal.chain import ChainDriver, ChainError
from hal.clock import Clock
from hal.limits import HardwareLimits, LimitError
from hal.rig import run_parallel
from hal.tools import chain_cli
from hal.transport import Transport
from tests.simproc import start_sim

S21 = models.get('S21')
BM1368 = families.get('BM1368')
TS = 10.0


def driver(url, time_scale=TS):
    return ChainDriver(Transport(url), None, Clock(time_scale), HardwareLimits(S21, BM1368),
                       f_nom_mhz=S21['f_nom_mhz'])


def up(drv, freq_mhz=490.0):
    assert len(drv.enumerate(silence_s=0.3)) == 108
    drv.assign_addresses()
    drv.init(freq_mhz)
    return drv


def measure(drv, window_s=3.0):
    drv.poll()
    drv.clock.sleep(window_s)
    return drv.poll()


def expected_ghs(mhz):
    return mhz * 1e6 * S21['cores_per_chip'] / 1e9


def test_scan_every_board_finds_108_bm1368_with_pow2_addresses():
    with start_sim('S21', time_scale=TS) as sim:
        drivers = [driver(u) for u in sim.ports['chains']]
        try:
            ids = run_parallel([(lambda d=d: d.enumerate(silence_s=0.3)) for d in drivers])
            for d, chip_ids in zip(drivers, ids):
                assert len(chip_ids) == S21['chips_per_board']
                assert set(chip_ids) == {0x1368}
                assert d.family is BM1368
                addrs = d.assign_addresses('pow2')
                assert addrs == [2 * i for i in range(108)]
                assert d.verify_addresses() == addrs     # each chip answers at its address
                assert d.framer.stats()['crc_errors'] == 0
        finally:
            for d in drivers:
                d.transport.close()


@pytest.mark.slow
def test_init_then_frequency_change_shows_in_hashrate():
    with start_sim('S21', time_scale=TS) as sim:
        drv = up(driver(sim.ports['chains'][1]))
        try:
            assert drv.framer.frame_len == 11            # version rolling on
            st = measure(drv)
            per_chip = [c['hashrate_ghs'] for c in st['chips']]
            assert all(c['temp_c'] is not None and 20 < c['temp_c'] < 100 for c in st['chips'])
            assert all(abs(h / expected_ghs(490) - 1) < 0.03 for h in per_chip)
            assert st['nonces'] > 0 and st['nonces_unattributed'] == 0
            assert drv.set_frequency(400.0) == 400.0
            st = measure(drv)
            assert all(c['freq_mhz'] == 400.0 for c in st['chips'])
            rate = st['hashrate_ghs'] / 108
            assert abs(rate / expected_ghs(400) - 1) < 0.03
            # Per-chip change: only chip 0x02 moves.
            drv.set_frequency(450.0, chips=[2])
            st = measure(drv)
            c1 = st['chips'][1]
            assert c1['freq_mhz'] == 450.0 and abs(c1['hashrate_ghs'] / expected_ghs(450) - 1) < 0.05
            assert abs(st['chips'][0]['hashrate_ghs'] / expected_ghs(400) - 1) < 0.05
            with pytest.raises(LimitError):
                drv.set_frequency(S21['freq_max_mhz'] + 50)
        finally:
            drv.transport.close()


def test_corrupted_chip_id_answers_are_skipped():
    with start_sim('S21', time_scale=TS, faults=['corrupt:rate=0.003,chain=0']) as sim:
        drv = driver(sim.ports['chains'][0])
        try:
            counts = [len(drv.enumerate(silence_s=0.3)) for _ in range(3)]
            assert all(90 <= n <= 108 for n in counts)
            assert min(counts) < 108                       # some answers were corrupted...
            assert drv.framer.stats()['crc_errors'] > 0    # ...and counted, never raised
        finally:
            drv.transport.close()


@pytest.mark.slow
def test_corrupt_bytes_and_dead_chip_are_seen_and_survived():
    # Corruption starts after init (physics t = 15 s), the chip dies at t = 25 s.
    faults = ['corrupt:rate=0.002,chain=0,at=15', 'chip-dead:board=0,chip=5,at=25']
    with start_sim('S21', time_scale=TS, faults=faults) as sim:
        drv = driver(sim.ports['chains'][0])
        try:
            assert len(drv.enumerate(silence_s=0.3)) == 108
            drv.assign_addresses()
            drv.init(490.0)
            dead_seen = False
            for _ in range(40):
                st = drv.poll()
                if not st['chips'][5]['alive']:
                    dead_seen = True
                    break
                drv.clock.sleep(1.0)
            assert dead_seen, 'chip 5 never marked dead'
            fr = st['framer']
            assert fr['crc_errors'] > 0 and fr['dropped_bytes'] > 0, fr
            st = measure(drv)
            alive = [c['index'] for c in st['chips'] if c['alive']]
            assert len(alive) == 107 and 5 not in alive, (alive, st['last_read'])
            # The other chips keep being measured despite the corruption (a corrupted counter
            # that still passes the 5-bit CRC can spoil a chip's window: allow a few).
            rates = [st['chips'][i]['hashrate_ghs'] for i in alive]
            good = [r for r in rates if r is not None and abs(r / expected_ghs(490) - 1) < 0.05]
            assert len(good) > 100, (rates, st['last_read'], st['framer'])
        finally:
            drv.transport.close()


def test_chain_cli_scan_and_status(capsys):
    with start_sim('S21', time_scale=TS) as sim:
        port = sim.ports['chains'][2]
        assert chain_cli.main(['scan', '--port', port, '--json', '--silence-s', '0.3']) == 0
        out = json.loads(capsys.readouterr().out)
        assert out['chips'] == 108 and out['family'] == 'BM1368'
        assert [c['addr'] for c in out['chip_list']][:3] == [0, 2, 4]
        assert all(c['answers'] for c in out['chip_list'])
        assert chain_cli.main(['status', '--port', port, '--json', '--silence-s', '0.3',
                               '--time-scale', str(TS), '--freq-mhz', '450']) == 0
        st = json.loads(capsys.readouterr().out)
        assert st['did_init'] and st['alive'] == 108
        assert abs(st['hashrate_ghs'] / (108 * expected_ghs(450)) - 1) < 0.03
        assert chain_cli.main(['status', '--port', port, '--silence-s', '0.3',
                               '--time-scale', str(TS), '--freq-mhz', '9999']) == 1
        assert 'outside' in capsys.readouterr().err
        # chain 1: the full bring-up through `chain init`, then the chips hash at the new baud
        port = sim.ports['chains'][1]
        assert chain_cli.main(['init', '--port', port, '--json', '--silence-s', '0.3',
                               '--mhz', '450', '--baud', '3125000']) == 0
        st = json.loads(capsys.readouterr().out)
        assert st['initialised'] and st['baud'] == 3125000 and len(st['chips']) == 108
        drv = driver(port)              # a second host that only reads (no re-addressing:
        drv.transport.set_baud(3125000)  # its broadcast 0xA8 would stop the cores)
        drv.framer.set_frame_len(11)
        drv.family = BM1368
        drv.assume_chips(108)
        for i, c in enumerate(drv.chips):
            c.addr, c.freq_mhz = 2 * i, 450.0
        drv.by_addr = dict((c.addr, c) for c in drv.chips)
        got = measure(drv)
        assert abs(got['hashrate_ghs'] / (108 * expected_ghs(450)) - 1) < 0.05
        drv.transport.close()


def test_baud_switch_to_3125000_then_reads_still_match():
    with start_sim('S21', time_scale=TS) as sim:
        drv = driver(sim.ports['chains'][0])
        try:
            assert len(drv.enumerate(silence_s=0.3)) == 108
            drv.assign_addresses('even')                  # 256 // 108 = 2 as well
            drv.init(490.0, baud=3125000)
            assert drv.transport.baud == 3125000
            st = measure(drv)
            assert st['baud'] == 3125000 and st['alive'] == 108
            assert st['last_read']['timeouts'] == 0
            assert abs(st['hashrate_ghs'] / (108 * expected_ghs(490)) - 1) < 0.03
            with pytest.raises(ChainError, match="reset"):
                drv.set_baud(115200)                      # needs a chip reset: refused
        finally:
            drv.transport.close()


# Starts real processes (simulator, agent, broker): left out of `make test-fast`.
pytestmark = pytest.mark.e2e
