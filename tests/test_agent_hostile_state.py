"""The agent against a hostile state dir (simulator + real Mosquitto + `hashpilot run`): whatever
is in its state dir it starts, mines with the boards safe, raises an alarm and reports exactly
how many unsent records it lost; crafted records for foreign topics are never published. (issue 17)
"""

import os

import pytest

from agent.outbox import Outbox, scan_segment
from tests.agentproc import AgentProcess, Recorder, dump
from tests.broker import Broker
from tests.simproc import start_sim

pytestmark = [pytest.mark.e2e]

ROOT = 'hashpilot/v1/lab/%s/'


@pytest.fixture(scope='module')
def sim():
    with start_sim('GAMMA', time_scale=5, seed=3) as s:
        yield s


def corrupt_outbox(state, rig):
    """40 unsent records in 4 segments + 2 crafted ones for foreign topics; the newest segment
    is then overwritten. Returns (records lost, records that must be replayed)."""
    d = os.path.join(state, 'outbox')
    ob = Outbox(d, segment_bytes=1024, flush_bytes=1 << 20)
    ob.append('hashpilot/v1/lab/other-rig/cmd/reset_safety', b'{"id": "forged"}')
    ob.append('$SYS/forged', b'x')
    for i in range(40):
        ob.append(ROOT % rig + 'alarm', b'not cbor %d' % i + b'.' * 150)
        if i % 5 == 4:
            ob.flush()
    ob.close()
    segs = sorted(n for n in os.listdir(d) if n.startswith('seg-'))
    newest = os.path.join(d, segs[-1])
    with open(newest, 'rb') as f:
        data = f.read()
    lost = len([r for r in scan_segment(data)[0] if r[0] == 'D'])
    assert lost == 5
    with open(newest, 'wb') as f:
        f.write(b'\xa5' * len(data))
    return lost, 40 - lost


def outbox_is_a_file(state, rig):
    os.makedirs(state)
    with open(os.path.join(state, 'outbox'), 'w') as f:
        f.write('stray')
    return 0, 0


def segment_named_dir(state, rig):
    os.makedirs(os.path.join(state, 'outbox', 'seg-00000001.log'))
    return 0, 0


def state_dir_is_a_file(state, rig):
    with open(state, 'w') as f:
        f.write('stray')
    return 0, 0


VARIANTS = {'state dir is a file': state_dir_is_a_file, 'corrupt outbox': corrupt_outbox, 'outbox is a file': outbox_is_a_file,
            'directory named like a segment': segment_named_dir}


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_agent_starts_mines_alarms_and_counts_losses(tmp_path, sim, variant):
    rig = 'st%d' % sorted(VARIANTS).index(variant)
    state = str(tmp_path / 'state')
    lost, replayed = VARIANTS[variant](state, rig)
    with Broker() as broker:
        rec = Recorder(broker, 'lab', rig)
        spy = Recorder(broker, 'lab', 'other-rig')
        with AgentProcess(tmp_path, sim.ports_file, broker, rig=rig, state_dir=state) as agent:
            rec.wait_for(lambda: any(t and t['hashrate_ghs'] > 100 for t in rec.of('telemetry')), 60,
                         'hashing telemetry')
            rec.wait_for(lambda: [a for a in rec.of('alarm') if a and a.get('id') in
                                  ('rig.state_dir', 'rig.outbox_lost')], 30, 'a state-dir alarm')
            alarms = {a['id']: a for a in rec.of('alarm') if a and a.get('event') == 'raise'}
            tele = [t for t in rec.of('telemetry') if t][-1]
            assert tele['state'] in ('normal', 'hot'), dump(tele)
            if lost:
                assert alarms['rig.outbox_lost']['message'].startswith(
                    'outbox: %d unsent records lost' % lost), dump(alarms)
                rec.wait_for(lambda: len([m for m in rec.messages if m[0] == 'alarm' and m[1] is None])
                             >= replayed, 30, 'replayed records')
            else:
                assert 'rig.state_dir' in alarms, dump(alarms)
            if variant in ('outbox is a file', 'state dir is a file'):
                assert 'RAM only' in alarms['rig.state_dir']['message']
            assert agent.alive(), agent.log()[-2000:]
            assert 'Traceback' not in agent.log()
            assert agent.stop() == 0
        assert spy.messages == []      # the crafted foreign-topic records went nowhere
        rec.close()
        spy.close()
