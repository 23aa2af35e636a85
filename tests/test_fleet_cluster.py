"""3-node NATS cluster (MQTT + JetStream R3, Debian nats-server) started by the test: rigs spread
over the nodes, consumers on different nodes split the sites, one node is SIGKILLed mid-run; the
rigs fail over to the other nodes and replay their outbox, the consumers go on, nothing is lost.
The 20 000-rig version is opt-in: HASHPILOT_BENCH_FLEET=1 (make bench-fleet)."""

import json
import os

import pytest

from test_fleet_bench import bench


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
@pytest.mark.skipif(os.environ.get('HASHPILOT_BENCH_FLEET') != '1',
                    reason='20 000 rigs on the cluster: HASHPILOT_BENCH_FLEET=1 (make bench-fleet)')
def test_cluster_twenty_thousand_rigs_node_killed():
    rep = bench('--cluster', 'nats', '--rigs', os.environ.get('HASHPILOT_BENCH_CLUSTER_RIGS', '20000'),
                '--duration-s', '180', '--consumers', '2', '--kill-node-at-s', '60',
                '--backoff-min-s', '1', '--backoff-max-s', '16', '--idle-exit-s', '20',
                '--connect-rate', '1000', timeout=1800)
    print(json.dumps(rep, indent=1))
    for kind in ('telemetry', 'chips'):
        assert rep['loss'][kind]['lost'] == 0
    assert rep['storm']['outage_max_s'] <= 30
