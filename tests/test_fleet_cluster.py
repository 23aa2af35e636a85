"""3-node NATS cluster (JetStream R3, Debian nats-server) started by the test, one node SIGKILLed
mid-run, nothing lost, the consumers go on.

- nats-sites (the architecture of docs/fleet-scale.md): rigs on per-site Mosquittos, one uplink
  per site into the cluster in batches; the killed node is the leader of the stream the
  telemetry goes through. The rigs keep their site broker, the uplinks move to another node,
  the consumers keep getting live batches while the stream elects a new leader.
- nats (rigs straight on the cluster's MQTT ports): the rigs of the killed node fail over to
  the other nodes and replay their outbox.
The 20 000-rig run is opt-in: HASHPILOT_BENCH_FLEET=1 (make bench-fleet)."""

import json
import os

import pytest

from test_fleet_bench import bench


@pytest.mark.slow
@pytest.mark.e2e
def test_node_killed_nothing_lost_agents_back():
    rep = bench('--cluster', 'nats', '--rigs', '300', '--rigs-per-site', '50', '--duration-s', '30',
                '--rate-scale', '10', '--consumers', '2', '--kill-node-at-s', '8',
                '--backoff-min-s', '0.5', '--backoff-max-s', '8', '--idle-exit-s', '8')
    for kind in ('telemetry', 'chips'):
        loss = rep['loss'][kind]
        assert loss['expected'] > 0 and loss['lost'] == 0, rep['loss']
    storm = rep['storm']
    assert storm['reconnected'] >= 50            # the killed node's rigs came back elsewhere
    assert storm['outage_max_s'] < 30, storm
    assert rep['broker']['processes'] == 3


@pytest.mark.slow
@pytest.mark.e2e
def test_site_uplinks_stream_leader_killed_nothing_lost_live_path_goes_on():
    rep = bench('--cluster', 'nats-sites', '--rigs', '300', '--rigs-per-site', '50', '--duration-s', '30',
                '--rate-scale', '10', '--consumers', '2', '--kill-node-at-s', '8', '--kill-node', '-1',
                '--idle-exit-s', '8')
    # 3 s, not the goal's 2 s: a short run at 10x rates, with the 3 nodes, 6 site brokers,
    # uplinks, consumers and the loadgen all on a shared 2-core host, keeps a margin for a
    # loaded machine; the goal's 2 s is asserted by the 20 000-rig run (make bench-fleet)
    check_sites_run(rep, live_p99_ms=3000)


def check_sites_run(rep, live_p99_ms):
    for kind in ('telemetry', 'chips'):
        loss = rep['loss'][kind]
        assert loss['expected'] > 0 and loss['lost'] == 0, rep['loss']
    kill = rep['broker_restart']
    assert 'HP' in kill['leaders_on_killed_node'], kill      # the worst node was killed
    up = rep['uplink']
    assert up['reconnected_after_kill'] >= 1, up             # uplinks moved to another node
    assert up['outage_max_s'] is not None and up['outage_max_s'] <= 30, up
    assert rep['generator']['disconnects'] == 0              # rigs stayed on their site broker
    assert rep['broker']['processes'] == 3
    # the JetStream election after the kill takes 4-9 s in nats-server 2.9 (raft.go): a
    # consumer fed only through the stream would see every message of those seconds late
    # the 61-s window alone would hide a stall that delays under 1 % of it (~0.6 s of traffic):
    # the first 10 s after the kill, where the election is, must meet the same bound
    for kind in ('telemetry', 'chips'):
        assert rep['latency_failover_window'][kind]['p99_ms'] <= live_p99_ms, rep['latency_failover_window']
        assert rep['latency_failover_first_10s'][kind]['p99_ms'] <= live_p99_ms, rep['latency_failover_first_10s']
    # a batch that does not decode is acked and dropped by the consumer: there must be none
    nats = rep['consumer_nats']
    assert nats and all(n is not None and n['bad_batches'] == 0 for n in nats), nats


def big_run_argv(duration_s):
    env = os.environ.get
    return ['--rigs', env('HASHPILOT_BENCH_CLUSTER_RIGS', '20000'),
            '--duration-s', env('HASHPILOT_BENCH_CLUSTER_DURATION_S', duration_s),
            '--consumers', '2', '--kill-node-at-s', env('HASHPILOT_BENCH_KILL_AT_S', '60'),
            '--idle-exit-s', '20', '--rigs-per-site', '2500', '--connect-rate', '1000']


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(os.environ.get('HASHPILOT_BENCH_FLEET') != '1',
                    reason='20 000 rigs on the cluster: HASHPILOT_BENCH_FLEET=1 (make bench-fleet)')
def test_cluster_twenty_thousand_rigs_node_killed():
    rep = bench('--cluster', 'nats-sites', '--kill-node', '-1', *big_run_argv('180'), timeout=1800)
    print(json.dumps(rep, indent=1))
    check_sites_run(rep, live_p99_ms=2000)                  # the goal


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(os.environ.get('HASHPILOT_BENCH_CLUSTER_DIRECT') != '1',
                    reason='rigs straight on the cluster at 20 000: HASHPILOT_BENCH_CLUSTER_DIRECT=1')
def test_cluster_direct_mqtt_rigs_node_killed():
    """The comparison run: every rig on the cluster's MQTT ports (docs/fleet-scale.md)."""
    rep = bench('--cluster', 'nats', '--backoff-min-s', '1', '--backoff-max-s', '16',
                *big_run_argv('150'), timeout=1800)
    print(json.dumps(rep, indent=1))
    for kind in ('telemetry', 'chips'):
        assert rep['loss'][kind]['lost'] == 0
    assert rep['storm']['outage_max_s'] <= 30


@pytest.mark.slow
@pytest.mark.e2e
def test_real_agent_link_fails_over_between_cluster_nodes(tmp_path):
    """The agent's own MqttLink (paho, MQTT 3.1.1) on node 0 with nodes 1 and 2 as failover: node 0
    is killed, the link moves on, its outbox replays, a consumer on node 2 gets every seq."""
    import queue
    import subprocess
    import sys
    import time

    from agent.mqtt_link import MqttLink
    from fleet.cluster import NatsCluster
    from mqtt_schema import payloads

    status = {'state': 'running', 'boards': [{'index': 0, 'chips': [
        {'temp_c': 60.5, 'freq_mhz': 525.0, 'hashrate_ghs': 1070.0, 'err_pct': 0.1, 'state': 'ok'}]}]}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with NatsCluster() as cl:
        b = cl.brokers()
        seen = str(tmp_path / 'c.seen')
        ready = str(tmp_path / 'ready')
        cons = subprocess.Popen([sys.executable, '-m', 'fleet.ingest', '--broker', b[2], '--broker', b[1],
                                 '--protocol', '311', '--client-id', 'agent-check', '--sites', 'cl',
                                 '--seen', seen, '--ready-file', ready, '--report', str(tmp_path / 'r.json'),
                                 '--idle-exit-s', '6', '--idle-after-file', str(tmp_path / 'done')],
                                cwd=root, env=dict(os.environ, PYTHONPATH=root))
        end = time.monotonic() + 30
        while not os.path.exists(ready):
            assert cons.poll() is None and time.monotonic() < end
            time.sleep(0.05)
        host, port = b[0].split(':')
        link = MqttLink({'site': 'cl', 'rig': 'r1', 'host': host, 'port': int(port), 'protocol': 311,
                         'failover': b[1:], 'state_dir': str(tmp_path / 'ob'),
                         'backoff_min_s': 0.5, 'backoff_max_s': 2.0}, queue.Queue())
        link.start()
        end = time.monotonic() + 20
        while not link.is_connected():
            assert time.monotonic() < end
            time.sleep(0.05)
        sent = 60
        for i in range(sent):
            if i == 15:
                cl.kill(0)
            link.publish('telemetry', payloads.build_telemetry(status, link.session))
            time.sleep(0.25)
        end = time.monotonic() + 60
        while link.get_status()['queued'] and time.monotonic() < end:
            time.sleep(0.2)
        st = link.get_status()
        link.stop(drain_s=2.0)
        (tmp_path / 'done').write_text('')
        cons.wait(60)
    from fleet.ingest import load_seen
    got, _lat, _lts = load_seen(seen)
    seqs = set()
    for key, arr in got.items():
        if key.endswith('|' + link.session['boot_id']) and '/telemetry' in key:
            seqs.update(arr)
    assert st['failovers'] >= 1 and st['broker'] != b[0]
    assert seqs == set(range(1, sent + 1))
