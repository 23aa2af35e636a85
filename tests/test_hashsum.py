"""One count of hashes: the chain status, the telemetry and the cgminer API report the same
board and rig hashrate and the same live chips for one driver state (hal/hashsum.py)."""

import random

import pytest

from agent import telemetry
from hal import families, hashsum, models
from hal.sim.chips import Chain
from hal.sim.link import bring_up
from tests.test_api_wire import make_state, reply_json


class Control:
    """The attributes telemetry.collect reads from the control loop (no snapshot yet)."""

    def __init__(self, enabled):
        self.last_snapshot = None
        self.enabled = list(enabled)
        self.needs_init = [False] * len(enabled)
        self.caps_pct = [100] * len(enabled)


class Rig:
    def __init__(self, chains):
        self.chains = chains


def hashing_driver(n_chips, seed):
    """A real ChainDriver brought up on simulated BM1368 chips, polled until rates exist."""
    model = models.get('S21')
    fam = families.get(model['chip'])
    silicons = [{'dead': False, 'speed': 1.0, 'leak': 1.0, 'cap': 1.0} for _ in range(n_chips)]
    chain = Chain(fam, silicons, 1000, 500.0, random.Random(seed))
    for c in chain.chips:
        c.fmax_mhz = 2000.0
        c.temp_c = 60.0
    drv = bring_up(chain, model, freq_mhz=400.0, seed=seed)
    for _ in range(3):
        drv.poll()
        drv.clock.sleep(2.0)
    drv.poll()
    return drv


def test_chip_state_and_chain_sum():
    class C:
        def __init__(self, alive, ghs):
            self.alive, self.hashrate_ghs = alive, ghs
    chips = [C(True, 10.0), C(False, 7.0), C(True, None), C(True, 2.5)]
    assert [hashsum.chip_state(c) for c in chips] == ['ok', 'dead', 'ok', 'ok']
    assert hashsum.chip_state(chips[0], board_on=False) == 'off'
    assert hashsum.chain_ghs(chips) == 12.5          # the dead chip's stale 7.0 does not count
    assert hashsum.chain_ghs(chips, board_on=False) == 0
    assert hashsum.alive_count(chips) == 3
    assert hashsum.rig_ghs([12.5, 0, 1.5]) == 14.0


def test_telemetry_api_and_chain_status_agree():
    drivers = [hashing_driver(6, seed=1), hashing_driver(6, seed=2), hashing_driver(4, seed=3)]
    assert all(c.hashrate_ghs for d in drivers for c in d.chips), 'the sim should hash by now'
    # one chip stopped answering (its last rate stays in the driver), one has no rate yet
    drivers[0].chips[2].alive = False
    drivers[1].chips[4].hashrate_ghs = None
    chain_st = [d.get_status() for d in drivers]
    assert chain_st[0]['hashrate_ghs'] < sum(c.hashrate_ghs for c in drivers[0].chips)

    status = telemetry.collect(Control([True, True, False]), Rig(drivers))
    state = make_state()
    state['status'] = status
    devs = reply_json('{"command":"devs"}', state=state)['DEVS']
    chains = reply_json('{"command":"stats","new_api":true}', state=state)['STATS'][0]['chain']
    summary = reply_json('{"command":"summary"}', state=state)['SUMMARY'][0]

    for i in (0, 1):      # boards that hash: every view shows the driver's figures
        assert status['boards'][i]['hashrate_ghs'] == chain_st[i]['hashrate_ghs'] > 0
        assert [c['state'] == 'ok' for c in status['boards'][i]['chips']] == \
            [c['alive'] for c in chain_st[i]['chips']]
        assert devs[i]['MHS 5s'] == round(chain_st[i]['hashrate_ghs'] * 1000.0, 2)
        assert chains[i]['asic_num'] == chain_st[i]['alive']
        assert chains[i]['rate_real'] == round(chain_st[i]['hashrate_ghs'], 2)
    assert chains[0]['asic_num'] == 5 and chains[0]['asic'].count('x') == 1
    # a board switched off counts nothing, though its driver still holds rates
    assert chain_st[2]['hashrate_ghs'] > 0
    assert status['boards'][2]['hashrate_ghs'] == 0 and chains[2]['asic_num'] == 0
    assert devs[2]['MHS 5s'] == 0
    rig = chain_st[0]['hashrate_ghs'] + chain_st[1]['hashrate_ghs']
    assert status['hashrate_ghs'] == pytest.approx(rig, rel=1e-12)
    assert summary['GHS 5s'] == '%.2f' % rig


def test_payload_fallback_sums_like_the_driver():
    """A status without board totals (a third-party producer): the payload builder sums the
    chips by the same rule, so a dead chip's stale rate does not count there either."""
    from mqtt_schema import payloads
    chips = [{'hashrate_ghs': 10.0, 'alive': True}, {'hashrate_ghs': 7.0, 'alive': False},
             {'hashrate_ghs': 2.5, 'state': 'ok'}, {'hashrate_ghs': 4.0, 'state': 'dead'}]
    assert payloads.board_summary({'chips': chips})['hashrate_ghs'] == 12.5
    assert payloads.board_summary({'chips': chips, 'hashrate_ghs': 3.0})['hashrate_ghs'] == 3.0
