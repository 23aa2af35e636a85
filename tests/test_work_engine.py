"""WorkEngine logic without a simulator: frames per chain with distinct extranonce2, version
mask register, stale on clean_jobs, duplicate and below-target nonces, hardware errors and the
chip alarm, job refresh from hashrate, submit params the pool gets."""

import json
import os

from hal import codec, families
from hal.clock import Clock
from hal.work import chipjobs, jobs
from agent.work.engine import WorkEngine

DATA = os.path.join(os.path.dirname(__file__), 'data')


class FakeTransport:
    def __init__(self):
        self.frames = []

    def write(self, data):
        self.frames.append(bytes(data))


class FakeChip:
    def __init__(self, index, addr):
        self.index = index
        self.addr = addr
        self.hashrate_ghs = None
        self.alive = True     # hal.chain.Chip: only answering chips count (hal/hashsum.py)


class FakeChain:
    def __init__(self, n):
        self.transport = FakeTransport()
        self.chips = [FakeChip(i, 2 * i) for i in range(n)]
        self.ticket_bits = 8
        self.writes = []
        self.nonce_sink = None

    def write(self, reg, value, chip_addr=None):
        self.writes.append((reg, value))

    def listen(self, seconds):
        pass


class FakePools:
    def __init__(self):
        self.sent = []
        self.st = {'active': 0, 'gen': 1, 'all_down': False,
                   'pools': [{'index': 0, 'url': 'stratum+tcp://p:1', 'state': 'up'}]}

    def submit(self, params, gen):
        self.sent.append((params, gen))
        return 'sent'

    def status(self):
        return self.st


def _job_event(clean=True, gen=1, difficulty=1.0 / (1 << 23)):
    with open(os.path.join(DATA, 'work_capture_bm1370_notify.json')) as f:
        job = jobs.parse_notify(json.load(f)['params'])
    job['clean'] = clean
    return {'event': 'job', 'job': job, 'clean': clean, 'pool': 0, 'gen': gen,
            'extranonce1': bytes.fromhex('4128064f'), 'en2_size': 4, 'mask': 0x1FFFE000,
            'difficulty': difficulty}


def _engine(n_chains=3, chips=2, family='BM1368', **kw):
    chains = [FakeChain(chips) for _ in range(n_chains)]
    pools = FakePools()
    events = []
    eng = WorkEngine(chains, family, pools, Clock(1.0), check_bits=8, on_event=events.append,
                     window_s=1.0, **kw)
    eng.attach()
    return eng, chains, pools, events


def _solution(eng, chain_i, jid, chip, bad=False, bits=11):
    """A nonce frame chip `chip` of chain i would send for the work in slot jid."""
    work = eng.slots[chain_i].get(jid)
    fam = eng.family
    for n in range(1 << 20):
        nonce, hdr = codec.encode_nonce_fields(fam['nonce_layout'], n * 7919, jid, 3, chip.addr)
        v16 = n & 0xFF
        version = jobs.roll_version(work['version'], v16)
        h = jobs.sha256d(jobs.header(work, version, nonce.to_bytes(4, 'big')))
        if (jobs.meets_bits(h, bits) if not bad else not jobs.meets_bits(h, 8)):
            fr = codec.nonce_response(nonce, 0, hdr, v16, 11)
            return codec.decode_response(fr, fam['nonce_layout'])
    raise AssertionError('no solution')


def test_frames_per_chain_with_distinct_extranonce2_and_rolling_mask():
    eng, chains, pools, _ = _engine()
    eng.on_pool_event(_job_event())
    en2s = set()
    for i, ch in enumerate(chains):
        assert len(ch.transport.frames) == 1
        d = codec.decode_command(ch.transport.frames[0])
        assert d['kind'] == 'job' and d['crc_ok'] and len(d['payload']) == 82
        jid = d['payload'][0]
        en2s.add(eng.slots[i].get(jid)['en2'])
        assert ch.writes == [(families.REG_VERSION_ROLLING, 0x9000FFFF)]
    assert len(en2s) == 3
    eng.dispatch()                          # refresh: again three new, distinct extranonce2
    for i, ch in enumerate(chains):
        jid = codec.decode_command(ch.transport.frames[1])['payload'][0]
        en2s.add(eng.slots[i].get(jid)['en2'])
    assert len(en2s) == 6


def test_nonce_paths_share_stale_duplicate_hw_error_and_alarm():
    eng, chains, pools, events = _engine(hw_alarm_min=3)
    eng.on_pool_event(_job_event())
    eng.tick(eng.clock.monotonic())                         # opens the per-chip windows
    jid = codec.decode_command(chains[1].transport.frames[0])['payload'][0]
    chip = chains[1].chips[1]
    good = _solution(eng, 1, jid, chip)
    chains[1].nonce_sink(chains[1], chip, good)
    assert len(pools.sent) == 1
    params, gen = pools.sent[0]
    assert gen == 1 and params[:3] == ['875b4b7', '01000000', '685468d7'] and len(params) == 5
    chains[1].nonce_sink(chains[1], chip, good)             # the same nonce again
    assert len(pools.sent) == 1 and eng.counts['duplicates'] == 1
    for _ in range(4):
        chains[1].nonce_sink(chains[1], chip, _solution(eng, 1, jid, chip, bad=True))
    assert eng.counts['hw_errors'] == 4 and len(pools.sent) == 1
    eng.tick(eng.clock.monotonic() + 2.0)                   # window (1 s) closes
    raised = [e['id'] for e in events if e['action'] == 'raise']
    assert raised == ['chip3.hw_errors']                    # board 1 chip 1 of 2 per board
    st = eng.chip_status(1)[1]
    assert st['nonces'] == 2 and st['hw_errors'] == 4 and st['hw_err_pct'] > 50
    eng.on_pool_event(_job_event(clean=True))               # clean_jobs: old slot gone
    chains[1].nonce_sink(chains[1], chip, good)
    assert eng.counts['stale_nonces'] == 1 and len(pools.sent) == 1


def test_below_pool_difficulty_is_not_submitted():
    eng, chains, pools, _ = _engine(n_chains=1, chips=1)
    eng.on_pool_event(_job_event(difficulty=1e6))
    jid = codec.decode_command(chains[0].transport.frames[0])['payload'][0]
    chip = chains[0].chips[0]
    chains[0].nonce_sink(chains[0], chip, _solution(eng, 0, jid, chip))
    assert eng.counts['below_pool'] == 1 and not pools.sent
    assert eng.tallies[0][0].good == 1        # still a good nonce: it counts as hashes


def test_refresh_follows_hashrate():
    eng, chains, _, _ = _engine(n_chains=1, chips=108)
    eng.on_pool_event(_job_event())
    assert eng.refresh_s() == 30.0                          # no hashrate yet: the cap
    for c in chains[0].chips:
        c.hashrate_ghs = 620.0                              # S21 board ~67 TH/s
    # 2^32 nonces x 2^16 versions / 67 TH/s = 4.2 s; half of it
    assert 1.9 < eng.refresh_s() < 2.2


def test_bm1397_midstate_frames_and_pool_alarms():
    eng, chains, pools, events = _engine(n_chains=1, chips=1, family='BM1397')
    eng.on_pool_event(_job_event())
    d = codec.decode_command(chains[0].transport.frames[0])
    assert d['crc_ok'] and len(d['payload']) == 146 and d['payload'][1] == 4
    assert chains[0].writes == []                           # BM1397: no 0xA4 rolling register
    pools.st = {'active': None, 'gen': 2, 'all_down': True,
                'pools': [{'index': 0, 'url': 'stratum+tcp://p:1', 'state': 'down'}]}
    eng.all_down_s = 0.0
    eng.check_pools(0.0)
    raised = [e['id'] for e in events if e['action'] == 'raise']
    assert raised == ['pool.down', 'pool.all_down']
    assert 'stratum+tcp://p:1' in [e for e in events if e['id'] == 'pool.down'][0]['message']


def test_clean_jobs_seen_by_the_pool_thread_stops_shares_at_once():
    eng, chains, pools, _ = _engine(n_chains=1, chips=1)
    pools.clean_epoch = 4
    ev = _job_event()
    ev['epoch'] = 4
    eng.on_pool_event(ev)
    jid = codec.decode_command(chains[0].transport.frames[0])['payload'][0]
    chip = chains[0].chips[0]
    pools.clean_epoch = 5           # a clean notify arrived; its event is still queued
    chains[0].nonce_sink(chains[0], chip, _solution(eng, 0, jid, chip))
    assert not pools.sent and eng.counts['stale_flushed'] == 1
    assert eng.tallies[0][0].good == 1


def test_tuner_reads_hashes_and_errors_from_verified_nonces():
    """[work] tuner_source = "nonces": the tuner's per-chip hash and error units come from the
    engine's tallies, one unit per nonce (a wrong nonce is one error event for the tuner's
    Poisson statistics, not 2^N), not from the counters."""
    from agent.autotune.halio import RigIO

    class Chip:
        ref = None
        hash_units = 0.0      # the driver's counted hashes (none yet)
        err_units = 0
        freq_mhz = 490.0
        temp_c = 60.0
        hashrate_ghs = 600.0
        err_pct = 0.1
        alive = True

    class Rig:
        model = {'power_limit_w': 3500.0, 'temp_danger_c': 95.0}

    eng, chains, _, _ = _engine(n_chains=1, chips=2)
    rig = Rig()
    rig.chains = chains
    for ch in chains:
        ch.chips = [Chip(), Chip()]
    eng.attach()
    for ok in (True, True, True, False):
        eng.tallies[0][1].add(ok, 8)
    io = RigIO(rig, Clock(1.0), nonces=eng)
    rows = io.chips()[0]
    assert rows[1]['hash_units'] == 4.0 and rows[1]['err_units'] == 1
    # one wrong nonce in four is not yet enough data for a decision at the default target
    from agent.autotune import maths
    assert not maths.decision_ready(rows[1]['err_units'], rows[1]['hash_units'], 0.002, 3.0)
    assert rows[0]['hash_units'] == 0.0
    plain = RigIO(rig, Clock(1.0)).chips()[0]
    assert plain[1]['hashrate_ghs'] == 600.0 and plain[1]['hash_units'] == 0.0
