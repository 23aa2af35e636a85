"""A full disk under the agent's state dir (a real 256 KiB tmpfs, as in the issue; needs root
to mount, skipped otherwise): no file per failed flush, the failure alarmed and logged, unsent
data bounded in RAM and delivered once the broker is back, the alarm cleared when the disk has
room again. (issue 17)"""

import os
import subprocess
import time

import pytest

from tests.agentproc import AgentProcess, Recorder
from tests.broker import Broker
from tests.simproc import start_sim

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def tiny_fs(tmp_path):
    d = tmp_path / 'tmpfs'
    d.mkdir()
    p = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', str(d)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip('cannot mount a tmpfs here (%s)' % p.stderr.strip())
    yield d
    subprocess.run(['umount', '-l', str(d)], capture_output=True)


def fill(d, leave_bytes):
    st = os.statvfs(str(d))
    free = st.f_bavail * st.f_frsize
    with open(str(d / 'filler'), 'wb') as f:
        try:
            f.write(b'\0' * max(0, free - leave_bytes))
        except OSError:
            pass


def test_full_disk_bounded_alarmed_and_recovers(tmp_path, tiny_fs):
    state = tiny_fs / 'state'
    state.mkdir()
    fill(tiny_fs, 12 * 1024)
    with start_sim('GAMMA', time_scale=5, seed=4) as sim:
        broker = Broker()          # not started yet: everything piles up in the outbox
        try:
            with AgentProcess(tmp_path, sim.ports_file, broker, rig='full', telemetry_s=1,
                              chips_s=5, state_dir=str(state)) as agent:
                deadline = time.monotonic() + 60
                while 'rig.outbox_write raise' not in agent.log():
                    assert agent.alive(), agent.log()[-3000:]
                    assert time.monotonic() < deadline, agent.log()[-3000:]
                    time.sleep(0.5)
                time.sleep(5)      # more failed flushes
                segs = [n for n in os.listdir(str(state / 'outbox')) if n.startswith('seg-')]
                assert len(segs) <= 2, segs
                assert 'No space left' in agent.log()
                broker.start()
                rec = Recorder(broker, 'lab', 'full')
                rec.wait_for(lambda: any(a and a['id'] == 'rig.outbox_write' and a['event'] == 'raise'
                                         for a in rec.of('alarm')), 30, 'outbox_write alarm')
                os.remove(str(tiny_fs / 'filler'))
                rec.wait_for(lambda: any(a and a['id'] == 'rig.outbox_write' and a['event'] == 'clear'
                                         for a in rec.of('alarm')), 30, 'outbox_write cleared')
                tele = [t for t in rec.of('telemetry') if t]
                assert tele and 'Traceback' not in agent.log()
                print('DISKFULL segments_while_full=%d telemetry_delivered=%d' % (len(segs), len(tele)))
                rec.close()
                assert agent.stop() == 0
        finally:
            broker.close()


def test_empty_read_only_state_dir(tmp_path):
    """An empty read-only state dir (a read-only tmpfs; needs root to mount): the agent starts,
    mines, runs its outbox in RAM and says so."""
    d = tmp_path / 'ro'
    d.mkdir()
    p = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', str(d)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip('cannot mount a tmpfs here (%s)' % p.stderr.strip())
    try:
        with start_sim('GAMMA', time_scale=5, seed=4) as sim, Broker() as broker:
            rec = Recorder(broker, 'lab', 'ro')
            with AgentProcess(tmp_path, sim.ports_file, broker, rig='ro', telemetry_s=1,
                              chips_s=5, state_dir=str(d)) as agent:
                rec.wait_for(lambda: any(t and t['hashrate_ghs'] > 100 for t in rec.of('telemetry')),
                             60, 'hashing telemetry')
                rec.wait_for(lambda: any(a and a['id'] == 'rig.state_dir' for a in rec.of('alarm')),
                             30, 'state dir alarm')
                msg = [a for a in rec.of('alarm') if a and a['id'] == 'rig.state_dir'][0]['message']
                assert 'RAM only' in msg and 'Read-only' in msg, msg
                assert 'Traceback' not in agent.log()
                assert agent.stop() == 0
            rec.close()
    finally:
        subprocess.run(['umount', '-l', str(d)], capture_output=True)
