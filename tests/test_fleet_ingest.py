"""Ingest consumer against a real Mosquitto: a shared subscription splits the load between two
processes and together they get every message; a consumer killed with SIGKILL and restarted on its
persistent session loses nothing (acks follow the store commit) and stores nothing twice."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from broker import Broker
from fleet import ingest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sequencer_new_late_dup_and_gaps():
    s = ingest.Sequencer(keep_seen=True)
    v = [s.check('t', 'b', n) for n in (1, 2, 5, 3, 3, 2, 6)]
    assert v == ['new', 'new', 'new', 'late', 'dup', 'dup', 'new']
    assert s.gaps() == 1 and s.dups == 2 and s.late == 1
    assert s.check('t', 'b2', 1) == 'new'      # a new boot starts its own stream
    assert list(s.seen[('t', 'b')]) == [1, 2, 5, 3, 6]


def _py(module, *argv, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, '-m', module] + list(argv), cwd=ROOT, env=env, **kw)


def _wait_file(path, proc, timeout_s=20):
    end = time.monotonic() + timeout_s
    while not os.path.exists(path):
        assert proc.poll() is None and time.monotonic() < end, 'consumer did not subscribe'
        time.sleep(0.05)


def _consumer(b, tmp, name, *extra):
    ready = os.path.join(tmp, name + '.ready')
    if os.path.exists(ready):
        os.unlink(ready)
    p = _py('fleet.ingest', '--broker', '127.0.0.1:%d' % b.port, '--group', 'g', '--client-id', name,
            '--report', os.path.join(tmp, name + '.json'), '--seen', os.path.join(tmp, name + '.seen'),
            '--ready-file', ready, '--idle-exit-s', '4', *extra)
    _wait_file(ready, p)
    return p


def _loadgen(b, rigs, duration_s, scale):
    return _py('fleet.loadgen', '--broker', '127.0.0.1:%d' % b.port, '--rigs', str(rigs),
               '--duration-s', str(duration_s), '--rate-scale', str(scale), stdout=subprocess.PIPE,
               text=True)


@pytest.mark.slow
@pytest.mark.e2e
def test_shared_subscription_splits_and_restart_loses_nothing(tmp_path):
    tmp = str(tmp_path)
    with Broker() as b:
        c1 = _consumer(b, tmp, 'c1')
        c2 = _consumer(b, tmp, 'c2')
        lg = _loadgen(b, 200, 8, 20)
        time.sleep(3)
        c2.send_signal(signal.SIGTERM)        # clean stop, session kept by the broker
        c2.wait(20)
        os.rename(os.path.join(tmp, 'c2.seen'), os.path.join(tmp, 'c2a.seen'))
        time.sleep(2)
        c2 = _consumer(b, tmp, 'c2')          # same client id: the queued share arrives
        out, _ = lg.communicate(timeout=60)
        rep = json.loads(out)
        c1.wait(60)
        c2.wait(60)
    seen = {}
    for name in ('c1', 'c2a', 'c2'):
        s, _lat, _lts = ingest.load_seen(os.path.join(tmp, name + '.seen'))
        for key, seqs in s.items():
            seen.setdefault(key, set()).update(seqs)
    got = dict((k, sum(len(v) for key, v in seen.items() if key.split('|')[0].endswith('/' + k)))
               for k in ('telemetry', 'chips'))
    assert got == rep['expected'] and got['telemetry'] > 1000
    r1 = json.load(open(os.path.join(tmp, 'c1.json')))
    assert r1['messages']['telemetry'] < rep['expected']['telemetry']   # the load was split


@pytest.mark.slow
@pytest.mark.e2e
def test_killed_consumer_with_store_loses_and_duplicates_nothing(tmp_path):
    tmp = str(tmp_path)
    db = os.path.join(tmp, 'chips.sqlite')
    with Broker() as b:
        c = _consumer(b, tmp, 'k', '--chips-db', db, '--kinds', 'chips')
        lg = _loadgen(b, 300, 8, 30)
        time.sleep(4)
        c.send_signal(signal.SIGKILL)         # crash: unacknowledged messages come again
        c.wait(10)
        time.sleep(1)
        c = _consumer(b, tmp, 'k', '--chips-db', db, '--kinds', 'chips')
        out, _ = lg.communicate(timeout=60)
        rep = json.loads(out)
        c.wait(60)
    con = sqlite3.connect(db)
    rows = con.execute('SELECT COUNT(*), COUNT(DISTINCT site || rig || boot_id || seq) FROM chips').fetchone()
    assert rows[0] == rows[1] == rep['expected']['chips'] > 300


def test_on_message_feeds_only_newer_state_and_drops_duplicates():
    from mqtt_schema import bench as schema_bench
    from mqtt_schema import codec, payloads
    args = ingest.build_parser().parse_args(['--broker', '127.0.0.1:1'])
    ing = ingest.Ingest(args)
    fed = []
    ing.feed = lambda topic, msg: fed.append(msg['seq'])
    status = schema_bench.sample_status('S21', 1)
    sess = payloads.new_session('feedc0de')
    msgs = [codec.encode(payloads.build_telemetry(status, sess)) for _ in range(3)]
    topic = 'hashpilot/v1/s1/r1/telemetry'
    for i in (0, 2, 1, 1, 2):          # seq 1, 3, 2 (late), 2 and 3 again (duplicates)
        ing.on_message(topic, msgs[i], False, False)
    ing.on_message(topic, b'\xff junk', False, False)
    assert fed == [1, 3]
    rep = ing.report()
    assert rep['duplicates'] == 2 and rep['late'] == 1 and rep['gaps'] == 0
    assert rep['messages']['telemetry'] == 5 and rep['decode_errors'] == 1
