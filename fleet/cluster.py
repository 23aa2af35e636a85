"""A real 3-node NATS cluster with MQTT and JetStream (Debian `nats-server`) on loopback ports.

Why NATS (docs/fleet-scale.md has the long form): one static Go binary per node, MQTT sessions,
subscriptions, retained messages and QoS 1 messages live in JetStream streams replicated to all
three nodes (R3), so a consumer or a rig may come back on any node and find its session; a node
is ~20 MB of RAM, which lets a 2-core test machine run the cluster next to 20 000 virtual rigs.
RabbitMQ 3.10 (Debian 12) keeps an MQTT subscriber's queue on one node (lost with it) and three
Erlang nodes would not fit the machine; Mosquitto has no clustering, only bridges.

NATS 2.9 speaks MQTT 3.1.1 (no `$share`): consumers split the fleet by site (`ingest --sites`),
which also keeps each rig's messages on one consumer, in order.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

NATS = shutil.which('nats-server') or '/usr/sbin/nats-server'


def _free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


NODE_CONF = '''server_name: %(name)s
listen: 127.0.0.1:%(client)d
max_payload: 1MB
jetstream {
  store_dir: "%(store)s"
  max_memory_store: 256MB
  max_file_store: 4GB
}
cluster {
  name: hashpilot
  listen: 127.0.0.1:%(route)d
  routes: [%(routes)s]
}
mqtt {
  listen: 127.0.0.1:%(mqtt)d
  # QoS 1 messages, sessions and retained messages replicated on all three nodes
  stream_replicas: 3
  # a consumer may be slow or restarting: this many unacknowledged messages per subscription;
  # a delivery lost with a node comes again after ack_wait (the consumer drops duplicates)
  max_ack_pending: 65535
  ack_wait: "10s"
}
'''


class NatsCluster:
    """start() / kill(i) (SIGKILL) / restart(i) / stop(); mqtt_ports[i] for clients."""

    def __init__(self, nodes=3, base_dir=None):
        self.dir = base_dir or tempfile.mkdtemp(prefix='hp-nats-')
        self.own_dir = base_dir is None
        os.makedirs(self.dir, exist_ok=True)
        ports = _free_ports(3 * nodes)
        self.client_ports = ports[0:nodes]
        self.route_ports = ports[nodes:2 * nodes]
        self.mqtt_ports = ports[2 * nodes:]
        self.procs = [None] * nodes
        self.confs = []
        routes = ', '.join('nats-route://127.0.0.1:%d' % p for p in self.route_ports)
        for i in range(nodes):
            conf = os.path.join(self.dir, 'n%d.conf' % i)
            with open(conf, 'w') as f:
                f.write(NODE_CONF % {'name': 'n%d' % i, 'client': self.client_ports[i],
                                     'route': self.route_ports[i], 'mqtt': self.mqtt_ports[i],
                                     'store': os.path.join(self.dir, 'js%d' % i), 'routes': routes})
            self.confs.append(conf)

    def start_node(self, i):
        log = open(os.path.join(self.dir, 'n%d.log' % i), 'a')
        self.procs[i] = subprocess.Popen([NATS, '-c', self.confs[i]], stdout=log, stderr=log)
        log.close()

    def start(self, timeout_s=60.0):
        for i in range(len(self.procs)):
            self.start_node(i)
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s=60.0, nodes=None):
        """Every (given) node takes an MQTT session and a QoS 1 subscription (JetStream ready)."""
        end = time.monotonic() + timeout_s
        todo = list(nodes if nodes is not None else range(len(self.procs)))
        while todo:
            i = todo[0]
            if self.procs[i].poll() is not None:
                raise RuntimeError('nats-server n%d exited: %s' % (i, self.log_tail(i)))
            if self._probe(i):
                todo.pop(0)
                continue
            if time.monotonic() > end:
                raise RuntimeError('nats cluster not ready: %s' % self.log_tail(i))
            time.sleep(0.2)

    def _probe(self, i):
        from fleet import mqttwire as W
        try:
            with socket.create_connection(('127.0.0.1', self.mqtt_ports[i]), timeout=5) as s:
                s.settimeout(10)
                s.sendall(W.connect('hp-ready-%d' % i, version=4, clean=True, keepalive_s=10))
                sp = W.Splitter()
                packets = []
                while not packets:
                    data = s.recv(4096)
                    if not data:
                        return False
                    packets = sp.feed(data)
                if packets[0][0] != W.CONNACK or W.parse_connack(packets[0][2])[1] != 0:
                    return False
                s.sendall(W.subscribe(1, [('hp/ready/%d' % i, 1)], version=4))
                while True:
                    for ptype, _flags, body in packets[1:]:
                        if ptype == W.SUBACK:
                            return body[2:3] == b'\x01'
                    data = s.recv(4096)
                    if not data:
                        return False
                    packets = [None] + sp.feed(data)
        except (OSError, ValueError):
            return False

    def kill(self, i):
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)

    def leaders(self, timeout_s=10.0):
        """{stream: node index, 'stream/consumer': node index} of the JetStream leaders now."""
        import asyncio

        async def ask():
            import nats
            nc = await nats.connect(servers=['nats://127.0.0.1:%d' % p for p in self.client_ports],
                                    connect_timeout=2, max_reconnect_attempts=2)
            try:
                js = nc.jetstream(timeout=timeout_s)
                out = {}
                for si in await js.streams_info():
                    name = si.config.name
                    if si.cluster is not None and si.cluster.leader:
                        out[name] = si.cluster.leader
                    for ci in await js.consumers_info(name):
                        if ci.cluster is not None and ci.cluster.leader:
                            out['%s/%s' % (name, ci.name)] = ci.cluster.leader
                return out
            finally:
                await nc.close()
        names = asyncio.run(ask())
        return dict((k, int(v[1:])) for k, v in names.items() if v[1:].isdigit())

    def pids(self):
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def brokers(self):
        return ['127.0.0.1:%d' % p for p in self.mqtt_ports]

    def log_tail(self, i, n=1500):
        try:
            with open(os.path.join(self.dir, 'n%d.log' % i)) as f:
                return f.read()[-n:]
        except OSError:
            return ''

    def stop(self):
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.terminate()
        for p in self.procs:
            if p is not None:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
