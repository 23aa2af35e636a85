"""The shipped Mosquitto ACL (deploy/mosquitto/hashpilot.acl) against a real Mosquitto: a rig
publishes only its own topics and reads only its own cmd/, only operators command, nobody forges
a rig's cmd/result, and the client id cannot be taken over. Also the agent link's own defences:
takeover detection with back-off, TLS without a CA file never goes plaintext, TLS failures are
reported. (issue 17)"""

import os
import queue
import random
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.mqtt_link import MqttLink
from tests.broker import Broker

pytestmark = [pytest.mark.e2e]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACL = os.path.join(REPO, 'deploy', 'mosquitto', 'hashpilot.acl')
USERS = {'site1/rig1': 'pw-rig1', 'site1/rig2': 'pw-rig2', 'operator': 'pw-op', 'reader': 'pw-read',
         'watcher': 'pw-watch'}
R1, R2 = 'hashpilot/v1/site1/rig1/', 'hashpilot/v1/site1/rig2/'


def wait_for(pred, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


class Client:
    def __init__(self, b, user, sub=None, client_id=None):
        self.got = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                             client_id=client_id or 'c-%d' % random.randrange(1 << 30))
        self.c.username_pw_set(user, USERS[user])
        self.c.on_message = self._on_message
        self.suback = threading.Event()
        self.granted = None
        self.c.on_subscribe = self._on_subscribe
        self.connected = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: (not rc.is_failure) and self.connected.set()
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.connect(b.host, b.port, 10)
        self.c.loop_start()
        assert self.connected.wait(10), 'connect refused for %s' % user
        if sub:
            self.c.subscribe([(t, 1) for t in sub] if isinstance(sub, list) else sub, qos=0 if isinstance(sub, list) else 1)
            assert self.suback.wait(10)

    def _on_subscribe(self, c, u, mid, rcs, p):
        self.granted = rcs
        self.suback.set()

    def _on_message(self, c, u, msg):
        with self.lock:
            self.got.append(msg.topic)

    def pub(self, topic, payload=b'x'):
        """Publish at QoS 0 once connected. Mosquitto 2.0 drops the connection of a client whose
        PUBLISH the ACL denies (the client reconnects); one connection's PUBLISHes are judged in
        order, so a later allowed message that arrives proves the earlier ones were judged."""
        assert wait_for(self.c.is_connected)
        try:
            self.c.publish(topic, payload, qos=0).wait_for_publish(5)
        except RuntimeError:
            pass
        time.sleep(0.05)

    def topics(self):
        with self.lock:
            return list(self.got)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture(scope='module')
def acl_broker(tmp_path_factory):
    # the shipped file plus one more read-only account, added as its comment says (with the
    # client id bound to the username, one account = one connection at a time)
    acl = tmp_path_factory.mktemp('acl') / 'hashpilot.acl'
    with open(ACL) as f:
        acl.write_text(f.read() + '\nuser watcher\ntopic read hashpilot/v1/#\n')
    b = Broker(users=USERS, extra=['acl_file %s' % acl, 'use_username_as_clientid true'])
    b.start()
    yield b
    b.close()


def test_rig_publishes_only_its_own_topics(acl_broker):
    watch = Client(acl_broker, 'watcher', sub='hashpilot/v1/#')
    rig1 = Client(acl_broker, 'site1/rig1')
    try:
        allowed = [R1 + k for k in ('status', 'meta', 'telemetry', 'chips', 'alarm', 'cmd/result')]
        denied = [R2 + 'telemetry', R2 + 'cmd/result', R1 + 'cmd/set_fan', R2 + 'cmd/set_fan',
                  'hashpilot/v1/site2/rig1/telemetry', R1 + 'telemetry/extra', 'other/topic']
        for t in denied + allowed:
            rig1.pub(t)
        assert wait_for(lambda: set(allowed) <= set(watch.topics()))
        time.sleep(0.3)
        assert not set(denied) & set(watch.topics()), watch.topics()
    finally:
        watch.close()
        rig1.close()


def test_only_operators_command_and_nobody_forges_results(acl_broker):
    watch = Client(acl_broker, 'watcher', sub='hashpilot/v1/#')
    op = Client(acl_broker, 'operator')
    rig2 = Client(acl_broker, 'site1/rig2')
    reader = Client(acl_broker, 'reader')
    try:
        reader.pub(R1 + 'cmd/set_fan')
        rig2.pub(R1 + 'cmd/reset_safety')
        for t in (R1 + 'cmd/result', R1 + 'telemetry', R1 + 'status'):
            op.pub(t)
        op.pub(R1 + 'cmd/set_fan')
        assert wait_for(lambda: R1 + 'cmd/set_fan' in watch.topics())
        time.sleep(0.3)
        got = watch.topics()
        assert got.count(R1 + 'cmd/set_fan') == 1               # the operator's, nobody else's
        assert R1 + 'cmd/reset_safety' not in got
        assert not {R1 + 'cmd/result', R1 + 'telemetry', R1 + 'status'} & set(got), got
    finally:
        for c in (watch, op, rig2, reader):
            c.close()


def test_rig_reads_only_its_own_commands(acl_broker):
    rig1 = Client(acl_broker, 'site1/rig1', sub=R1 + 'cmd/+')
    rig2 = Client(acl_broker, 'site1/rig2', sub=[R1 + 'cmd/+', R2 + 'cmd/+', 'hashpilot/v1/#'])
    op = Client(acl_broker, 'operator')
    try:
        op.pub(R1 + 'cmd/identify')
        op.pub(R2 + 'cmd/identify')
        assert wait_for(lambda: R1 + 'cmd/identify' in rig1.topics())
        assert wait_for(lambda: R2 + 'cmd/identify' in rig2.topics())
        time.sleep(0.3)
        # Mosquitto grants the subscriptions and filters at delivery: rig2 sees only its own
        assert set(rig2.topics()) == {R2 + 'cmd/identify'} and R2 + 'cmd/identify' not in rig1.topics()
    finally:
        for c in (rig1, rig2, op):
            c.close()


def link_cfg(b, tmp_path, rig='rig1', **kw):
    s = {'site': 'site1', 'rig': rig, 'host': b.host, 'port': b.port,
         'state_dir': str(tmp_path / ('outbox-%s' % rig)), 'backoff_min_s': 0.2, 'backoff_max_s': 1.0,
         'keepalive_s': 5, 'outbox_flush_s': 0.2}
    s.update(kw)
    return s


def test_agent_link_with_rig_account_and_no_takeover(acl_broker, tmp_path):
    """The agent's link logs in as its rig, gets the operator's command; a rogue client using
    the rig's client id (with another account) cannot kick it: the broker renames the rogue."""
    q = queue.Queue()
    link = MqttLink(link_cfg(acl_broker, tmp_path, username='site1/rig1', password='pw-rig1'), q)
    link.start()
    op = Client(acl_broker, 'operator')
    try:
        assert wait_for(lambda: link.get_status()['subscribed'])
        for _ in range(5):
            rogue = Client(acl_broker, 'reader', client_id=link.client_id)
            rogue.close()
        op.pub(R1 + 'cmd/identify', b'{}')
        assert wait_for(lambda: not q.empty())
        assert q.get_nowait()[0] == 'identify'
        st = link.get_status()
        assert st['connects'] == 1 and st['reconnects'] == 0 and st['takeovers'] == 0
    finally:
        op.close()
        link.stop()


def test_takeover_detected_alarmed_and_backed_off(tmp_path):
    """Without the ACL's client-id binding, a rogue with the agent's id kicks it: the link sees
    MQTT 5 reason 142, flags the takeover and backs off instead of fighting for the id."""
    with Broker() as b:
        link = MqttLink(link_cfg(b, tmp_path, rig='rigT'), queue.Queue())
        link.start()
        try:
            assert wait_for(link.is_connected)
            stop = time.monotonic() + 4.0
            rogues = 0
            while time.monotonic() < stop:
                c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id=link.client_id)
                c.connect(b.host, b.port, 10)
                c.loop_start()
                time.sleep(0.2)
                c.disconnect()
                c.loop_stop()
                rogues += 1
            st = link.get_status()
            assert st['takeovers'] >= 1 and st['taken_over']
            assert 'taken over' in st['last_error']
            # without the back-off the link wins its id back after every rogue login
            assert st['connects'] < rogues, st
            print('TAKEOVER rogue_logins=%d link_connects=%d takeovers=%d' % (rogues, st['connects'], st['takeovers']))
        finally:
            link.stop(drain_s=0)


def test_tls_client_cert_without_ca_never_plaintext(tmp_path):
    """cert_file without ca_file: TLS with the system CA store (which does not know the test CA),
    so the link fails the handshake, says so, and never talks plaintext."""
    with Broker(tls=True) as tb, Broker() as plain:
        bad = MqttLink(link_cfg(tb, tmp_path, rig='rigA', cert_file=tb.client_cert, key_file=tb.client_key),
                       queue.Queue())
        assert bad.tls
        bad.start()
        # the same settings against a plaintext broker must not connect either
        p = MqttLink(link_cfg(plain, tmp_path, rig='rigB', cert_file=tb.client_cert, key_file=tb.client_key),
                     queue.Queue())
        p.start()
        try:
            assert wait_for(lambda: 'TLS' in (bad.get_status()['last_error'] or ''), 10)
            assert 'certificate verify failed' in bad.get_status()['last_error'].lower() or \
                'tls' in bad.get_status()['last_error'].lower()
            time.sleep(1.0)
            assert not bad.is_connected() and not p.is_connected()
        finally:
            bad.stop(drain_s=0)
            p.stop(drain_s=0)


def test_password_over_plaintext_warns(tmp_path, caplog):
    with Broker(username='u', password='p') as b:
        with caplog.at_level('WARNING', logger='agent.mqtt_link'):
            MqttLink(link_cfg(b, tmp_path, username='u', password='p'), queue.Queue())
        assert any('plaintext' in r.getMessage() for r in caplog.records)
