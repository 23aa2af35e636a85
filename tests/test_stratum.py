"""Stratum V1 client against the test pool (real sockets on 127.0.0.1): handshake with real
pools' quirks, shares verified by the pool, failover and fail-back, back-off, reconnect, TLS."""

import os
import shutil
import subprocess
import threading
import time

import pytest

from agent.stratum import protocol
from agent.stratum.client import PoolError, PoolManager, parse_url
from agent.stratum.testpool import TestPool
from hal.work import jobs

EASY = 1.0 / (1 << 22)       # 2^-22: ~10 leading zero bits, ~1000 hashes a share


class Events:
    def __init__(self):
        self.items = []
        self.cv = threading.Condition()

    def __call__(self, ev):
        with self.cv:
            self.items.append(ev)
            self.cv.notify_all()

    def wait(self, pred, timeout_s=10.0):
        end = time.monotonic() + timeout_s
        with self.cv:
            while True:
                for ev in self.items:
                    if pred(ev):
                        return ev
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError('no matching event; got %r' % [e['event'] for e in self.items])
                self.cv.wait(left)

    def last_job(self):
        with self.cv:
            return [e for e in self.items if e['event'] == 'job'][-1]


def grind(ev, counter=1, good=True):
    """A share for a job event: (params after the worker name)."""
    en2 = jobs.extranonce2(counter, ev['en2_size'])
    work = jobs.build_work(ev['job'], ev['extranonce1'], en2)
    target = jobs.target_of(ev['difficulty'])
    version = work['version'] | (0x2000 & ev['mask'])
    for n in range(1 << 24):
        n4 = n.to_bytes(4, 'little')
        h = jobs.sha256d(jobs.header(work, version, n4))
        if (jobs.hash_value(h) <= target) == good:
            return jobs.submit_params('', work, n4, version, ev['mask'])[1:]
    raise AssertionError('no share found')


def wait_for(pred, timeout_s=10.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    raise AssertionError('condition not met in %.1f s' % timeout_s)


@pytest.fixture
def pools():
    made = []

    def make(**kw):
        p = TestPool(difficulty=EASY, **kw)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


def _manager(urls, events, **kw):
    cfg = [{'url': u, 'user': 'acct.rig1', 'password': 'secret-pw'} for u in urls]
    kw.setdefault('timeout_s', 3.0)
    kw.setdefault('backoff_base_s', 0.1)
    kw.setdefault('backoff_max_s', 0.5)
    return PoolManager(cfg, on_event=events, **kw)


def test_parse_url():
    assert parse_url('stratum+tcp://pool.example:3333') == ('pool.example', 3333, False)
    assert parse_url('stratum+ssl://pool.example:443/') == ('pool.example', 443, True)
    assert parse_url('tls://[::1]:3334') == ('::1', 3334, True)
    for bad in ('pool:3333', 'http://pool:3333', 'tcp://pool', 'tcp://:3333',
                'tcp://acct:pw@pool:3333'):
        with pytest.raises(PoolError):
            parse_url(bad)


@pytest.mark.parametrize('quirks', [(), ('string_ids', 'notify_before_authorize',
                                         'difficulty_before_subscribe'), ('junk_lines',)])
def test_shares_verified_by_pool(pools, quirks):
    pool = pools(quirks=quirks)
    ev = Events()
    m = _manager([pool.url], ev)
    m.start()
    try:
        job = ev.wait(lambda e: e['event'] == 'job')
        assert job['mask'] == 0x1FFFE000 and job['en2_size'] == 4 and job['difficulty'] == EASY
        share = grind(job)
        assert m.submit(share, job['gen']) == 'sent'
        ev.wait(lambda e: e['event'] == 'share' and e['accepted'])
        assert m.submit(share, job['gen']) == 'sent'           # same share again
        ev.wait(lambda e: e['event'] == 'share' and e.get('duplicate'))
        assert m.submit(grind(job, 2, good=False), job['gen']) == 'sent'
        wait_for(lambda: m.status()['pools'][0]['rejected'] == 1)
        pool.new_job(clean=True)
        wait_for(lambda: ev.last_job()['job']['job_id'] != job['job']['job_id'])
        assert m.submit(grind(job, 3), job['gen']) == 'sent'   # job gone: stale
        wait_for(lambda: m.status()['pools'][0]['stale'] == 1)
        st = m.status()
        p0 = st['pools'][0]
        assert (p0['accepted'], p0['duplicate'], p0['rejected'], p0['stale']) == (1, 1, 1, 1)
        assert pool.counts['accepted'] == 1 and pool.counts['invalid'] == 1
        assert 'secret-pw' not in repr(st) and p0['last_share_age_s'] is not None
        assert p0['bad_lines'] == (3 if 'junk_lines' in quirks else 0)   # skipped, still mining
        assert m.submit(share, job['gen'] - 1) == 'stale'      # built for an older pool session
    finally:
        m.stop()


def test_failover_and_failback(pools):
    main, backup = pools(), pools()
    ev = Events()
    m = _manager([main.url, backup.url], ev, failback_s=0.3)
    m.start()
    try:
        ev.wait(lambda e: e['event'] == 'job' and e['pool'] == 0)
        t0 = time.monotonic()
        main.kill()
        job = ev.wait(lambda e: e['event'] == 'job' and e['pool'] == 1)
        assert m.submit(grind(job), job['gen']) == 'sent'
        wait_for(lambda: backup.counts['accepted'] == 1)
        failover_s = time.monotonic() - t0
        assert failover_s < 10.0
        st = m.status()
        assert st['active'] == 1 and st['pools'][0]['state'] == 'down'
        assert st['pools'][0]['down_for_s'] is not None
        main.revive()
        job = ev.wait(lambda e: e['event'] == 'job' and e['pool'] == 0 and e['gen'] > job['gen'])
        assert m.submit(grind(job), job['gen']) == 'sent'
        wait_for(lambda: main.counts['accepted'] == 1)
        assert m.status()['active'] == 0
    finally:
        m.stop()


def test_all_down_backs_off_with_jitter(pools):
    a, b = pools(), pools()
    a.kill()
    b.kill()
    ev = Events()
    m = _manager([a.url, b.url], ev)
    m.start()
    try:
        wait_for(lambda: m.status()['pools'][0]['failures'] >= 3)
        st = m.status()
        assert st['all_down'] and st['active'] is None
        assert st['pools'][0]['last_error']
        fails = st['pools'][0]['failures']
        time.sleep(0.5)
        assert m.status()['pools'][0]['failures'] <= fails + 3   # backing off, not spinning
        b.revive()
        ev.wait(lambda e: e['event'] == 'job' and e['pool'] == 1)
    finally:
        m.stop()


def test_wrong_password_is_refused_and_never_shown(pools, caplog):
    pool = pools(password='right')
    ev = Events()
    m = _manager([pool.url], ev)
    m.start()
    try:
        wait_for(lambda: m.status()['pools'][0]['failures'] >= 1)
        st = m.status()
        assert 'authorize refused' in st['pools'][0]['last_error']
        assert 'secret-pw' not in repr(st) and 'secret-pw' not in caplog.text
    finally:
        m.stop()


def test_client_reconnect(pools):
    pool = pools()
    ev = Events()
    m = _manager([pool.url], ev)
    m.start()
    try:
        job = ev.wait(lambda e: e['event'] == 'job')
        pool.send_reconnect(0)
        ev.wait(lambda e: e['event'] == 'job' and e['gen'] > job['gen'] + 1)
        assert pool.counts['connections'] == 2
    finally:
        m.stop()


def test_session_quirks_pure():
    s = protocol.Session('w', 'p')
    s.opening()
    # difficulty and notify before the subscribe answer
    assert s.handle({'method': 'mining.set_difficulty', 'params': [512]})['difficulty'] == 512.0
    assert s.handle({'id': '2', 'result': [[], 'ab', 32], 'error': None})['event'] == 'subscribed'
    assert s.en2_size == 32
    assert s.handle({'id': 99, 'result': True})['event'] == 'ignored'
    s.handle({'id': 1, 'result': {'version-rolling': False}, 'error': None})
    assert s.version_mask == 0
    with pytest.raises(protocol.ProtocolError):
        s.handle({'method': 'mining.set_extranonce', 'params': ['ab', 64]})
    with pytest.raises(protocol.ProtocolError):
        protocol.decode('{not json')
    s.handle({'id': 7, 'method': 'mining.ping', 'params': []})
    assert s.outbox[-1] == {'id': 7, 'result': 'pong', 'error': None}


def test_tls_pool(tmp_path):
    if not shutil.which('openssl'):
        pytest.fail('openssl is required (Debian package openssl)')
    key, crt = str(tmp_path / 'k.pem'), str(tmp_path / 'c.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key,
                    '-out', crt, '-days', '1', '-subj', '/CN=127.0.0.1',
                    '-addext', 'subjectAltName=IP:127.0.0.1'], check=True, capture_output=True)
    pool = TestPool(difficulty=EASY, tls=(crt, key))
    ev = Events()
    m = PoolManager([{'url': pool.url, 'user': 'a.b', 'password': 'x', 'tls_ca': crt}],
                    on_event=ev, timeout_s=3.0)
    m.start()
    try:
        job = ev.wait(lambda e: e['event'] == 'job')
        assert m.submit(grind(job), job['gen']) == 'sent'
        wait_for(lambda: pool.counts['accepted'] == 1)
    finally:
        m.stop()
        pool.close()


def test_switch_to_a_pool_and_back(pools):
    a, b = pools(), pools()
    ev = Events()
    m = _manager([a.url, b.url], ev, failback_s=30.0)
    m.start()
    try:
        job = ev.wait(lambda e: e['event'] == 'job' and e['pool'] == 0)
        m.switch_to(1)
        job = ev.wait(lambda e: e['event'] == 'job' and e['pool'] == 1)
        assert m.submit(grind(job), job['gen']) == 'sent'
        wait_for(lambda: b.counts['accepted'] == 1)
        assert m.status()['active'] == 1 and m.status()['preferred'] == 1
        m.switch_to(0)
        ev.wait(lambda e: e['event'] == 'job' and e['pool'] == 0 and e['gen'] > job['gen'])
        with pytest.raises(ValueError):
            m.switch_to(2)
    finally:
        m.stop()


def test_unanswered_submits_stay_bounded():
    """A pool that never answers submits: the oldest are given up, the newest still resolve."""
    s = protocol.Session('w', 'p')
    s.opening()
    first = s.request('mining.submit', ['w', 'j', '00', '00', '00'])
    for _ in range(3 * protocol.PENDING_MAX):
        last = s.request('mining.submit', ['w', 'j', '00', '00', '00'])
    assert len(s.pending) <= protocol.PENDING_MAX
    assert s.handle({'id': first['id'], 'result': True, 'error': None})['event'] == 'ignored'
    assert s.handle({'id': last['id'], 'result': True, 'error': None})['event'] == 'share'
