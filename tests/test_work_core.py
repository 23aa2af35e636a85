"""Known answers for the work path's pure core (hal/work): real captured job/nonce/submit round
trips, ESP-Miner's published test vectors and real mainnet block headers."""

import json
import os

import pytest

from hal import codec
from hal.work import chipjobs, jobs
from hal.work.sha256 import midstate

DATA = os.path.join(os.path.dirname(__file__), 'data')


def _capture():
    with open(os.path.join(DATA, 'work_capture_bm1370.json')) as f:
        cap = json.load(f)
    with open(os.path.join(DATA, 'work_capture_bm1370_notify.json')) as f:
        cap['notify'] = json.load(f)
    return cap


def test_bm1370_capture_round_trip():
    """Pool notify -> chip job frame -> chip nonce -> mining.submit, byte for byte as captured."""
    cap = _capture()
    job = jobs.parse_notify(cap['notify']['params'])
    work = jobs.build_work(job, bytes.fromhex(cap['extranonce1']), bytes.fromhex(cap['extranonce2']))
    frame = chipjobs.job_frame('BM1370', work, cap['chip_job_id'])
    assert frame.hex() == cap['job_frame']
    d = codec.decode_response(bytes.fromhex(cap['nonce_frame']), 'bm1370')
    fmt = chipjobs.job_format('BM1370')
    slots = chipjobs.JobSlots('BM1370')
    slots.slots[cap['chip_job_id']] = work
    jid, got = slots.lookup(d)
    assert jid == cap['chip_job_id'] and got is work
    mask = int(cap['version_mask'], 16)
    ok, h, version, n4 = chipjobs.check_nonce(fmt, work, d, mask, 32 + 8)
    assert ok
    assert round(jobs.difficulty(h)) == cap['difficulty']
    assert jobs.difficulty(h) >= cap['pool_difficulty']
    assert jobs.submit_params('w', work, n4, version, mask)[1:] == cap['submit']
    # One flipped nonce bit is a hardware error: the hash no longer meets the ticket.
    bad = dict(d, nonce=d['nonce'] ^ 0x100)
    assert not chipjobs.check_nonce(fmt, work, bad, mask, 32 + 8)[0]


@pytest.mark.parametrize('block', [
    # genesis block
    (1, '00' * 32, '4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b',
     1231006505, 0x1d00ffff, 2083236893,
     '000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f'),
    # block 125552 (the Bitcoin wiki's block hashing example)
    (1, '00000000000008a3a41b85b8b29ad444def299fee21793cd8b9e567eab02cd81',
     '2b12fcf1b09288fcaff797d71e950e71ae42b91e8bdb2304758dfcffc2b620e3',
     1305998791, 0x1a44b9f2, 2504433986,
     '00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d'),
])
def test_mainnet_headers(block):
    version, prev, root, ntime, nbits, nonce, want = block
    job = {'prev': bytes(reversed(bytes.fromhex(prev))), 'job_id': 'x'}
    work = {'job': job, 'merkle_root': bytes(reversed(bytes.fromhex(root))), 'version': version,
            'ntime': ntime, 'nbits': nbits}
    h = jobs.sha256d(jobs.header(work, version, nonce.to_bytes(4, 'little')))
    assert jobs.display_hash(h) == want
    assert jobs.hash_value(h) <= jobs.target_of_nbits(nbits)
    assert not jobs.meets_bits(h, jobs.hash_value(h).bit_length() and 256 - jobs.hash_value(h).bit_length() + 1)


def test_esp_miner_coinbase_and_merkle():
    # components/stratum/test/test_mining.c "Validate merkle root calculation"
    job = {'coinb1': bytes.fromhex('01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008e969579199999999072f736c7573682f0000000001'),
           'coinb2': bytes.fromhex('1976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000')}
    branches = [bytes.fromhex(h) for h in (
        'ae23055e00f0f697cc3640124812d96d4fe8bdfa03484c1c638ce5a1c0e9aa81',
        '980fb87cb61021dd7afd314fcb0dabd096f3d56a7377f6f320684652e7410a21',
        'a52e9868343c55ce405be8971ff340f562ae9ab6353f07140d01666180e19b52',
        '7435bdfa004e603953b2ed39f118803934d9cf17b06d979ceb682f2251bafac2',
        '2a91f061a22d27cb8f44eea79938fb241ebeb359891aa907f05ffde7ed44e52e',
        '302401f80eb5e958155135e25200bb8ea181ad2d05e804a531c7314d86403cdc',
        '318ecb6161eb9b4cfd802bd730e2d36c167ddf102e70aa7b4158e2870dd47392',
        '1114332a9858e0cf84b2425bb1e59eaabf91dd102d114aa443d57fc1b3beb0c9',
        'f43f38095c810613ed795a44d9fab02ff25269706f454885db9be05cdf9c06e1',
        '3e2fc26b27fddc39668b59099cd9635761bb72ed92404204e12bdff08b16fb75',
        '463c19427286342120039a83218fa87ce45448e246895abac11fff0036076758',
        '03d287f655813e540ddb9c4e7aeb922478662b0f5d8e9d0cbd564b20146bab76')]
    cb = jobs.coinbase(job, bytes.fromhex('00f2052a'), jobs.extranonce2(1, 4))
    root = jobs.merkle_root(jobs.sha256d(cb), branches)
    assert root.hex() == 'adbcbc21e20388422198a55957aedfa0e61be0b8f2b87d7c08510bb9f099a893'


def test_esp_miner_extranonce2_format():
    assert jobs.extranonce2(0, 4).hex() == '00000000'
    assert jobs.extranonce2(1, 4).hex() == '01000000'
    assert jobs.extranonce2(0xFFFFFFFE, 4).hex() == 'feffffff'
    assert jobs.extranonce2(0x7FFFFFFF, 6).hex() == 'ffffff7f0000'
    assert len(jobs.extranonce2(5, 32)) == 32            # huge extranonce2 sizes
    with pytest.raises(jobs.JobError):
        jobs.extranonce2(256, 1)


@pytest.mark.parametrize('prev,ntime,root,nonce,diff', [
    ('d02b10fc0d4711eae1a805af50a8a83312a2215e00017f2b0000000000000000', 0x646ff1a9,
     '6d0359c451434605c52a5a9ce074340be47c2c63840731f9edf1db3f26b1cdd9', 0x276E8947, 18),
    ('0c859545a3498373a57452fac22eb7113df2a465000543520000000000000000', 0x647025b5,
     '5bdc1968499c3393873edf8e07a1c3a50a97fc3a9d1a376bbf77087dd63778eb', 0x0a029ed1, 683),
])
def test_esp_miner_nonce_difficulty(prev, ntime, root, nonce, diff):
    # components/stratum/test/test_mining.c "Test nonce diff checking" 1 and 2
    job = {'prev': jobs.swap_words(bytes.fromhex(prev)), 'job_id': 'x'}
    work = {'job': job, 'merkle_root': bytes.fromhex(root), 'version': 0x20000004,
            'ntime': ntime, 'nbits': 0x1705ae3a}
    h = jobs.sha256d(jobs.header(work, 0x20000004, nonce.to_bytes(4, 'little')))
    assert int(jobs.difficulty(h)) == diff


def test_esp_miner_bm1397_midstate_frame():
    # components/stratum/test/test_mining.c "Validate bm job construction"
    job = {'prev': jobs.swap_words(bytes.fromhex(
        'bf44fd3513dc7b837d60e5c628b572b448d204a8000007490000000000000000')), 'job_id': 'x'}
    root = bytes.fromhex('cd1be82132ef0d12053dcece1fa0247fcfdb61d4dbd3eb32ea9ef9b4c604a846')
    work = {'job': job, 'merkle_root': root, 'version': 0x20000004, 'ntime': 0x64658bd8,
            'nbits': 0x1705dd01}
    # ESP-Miner prints the state words little-endian
    want = jobs.swap_words(bytes.fromhex(
        '91DFEA528A9F73683D0D495DD6DD7415E1CA21CB411759E3E05D7D5FF285314D'))
    assert midstate(work['version'].to_bytes(4, 'little') + job['prev'] + root[:28]) == want
    frame = chipjobs.job_frame('BM1397', work, 4)
    d = codec.decode_command(frame)
    assert d['kind'] == 'job' and d['crc_ok']
    payload = d['payload']
    assert len(payload) == 50 and payload[0] == 4 and payload[1] == 1
    assert payload[18:50] == jobs.reverse_words(want)
    assert payload[14:18] == root[28:32]
    assert len(codec.decode_command(chipjobs.job_frame('BM1397', work, 8, 0x1fffe000))['payload']) == 146


def test_esp_miner_version_increment():
    v = 0x20000004
    seq = []
    for _ in range(4):
        v = jobs.increment_bitmask(v, 0x00ffff00)
        seq.append(v)
    assert seq == [0x20000104, 0x20000204, 0x20000304, 0x20000404]
    assert jobs.increment_bitmask(0x2000FF00, 0x0000FF00) == 0x20000000   # wraps inside the mask


@pytest.mark.parametrize('family,step,header', [('BM1366', 8, 0xF8), ('BM1368', 24, 0xF0),
                                                 ('BM1370', 24, 0xF0), ('BM1397', 4, 0xFC)])
def test_job_ids_round_trip(family, step, header):
    slots = chipjobs.JobSlots(family)
    fmt = slots.fmt
    seen = set()
    for i in range(40):
        jid = slots.put({'n': i})
        assert jid == ((i + 1) * step) % 128
        seen.add(jid)
        # the header byte a chip answers with for this job id
        hb = (jid << fmt['result_shift']) & header
        assert chipjobs.result_job_id(fmt, hb) == jid
    assert len(seen) == 128 // (8 if step != 4 else 4)
    slots.clear()
    assert slots.lookup({'header': (step << fmt['result_shift']) & header})[1] is None


def test_parse_notify_errors_are_clear():
    with pytest.raises(jobs.JobError, match='9 params'):
        jobs.parse_notify(['a'])
    p = _capture()['notify']['params']
    with pytest.raises(jobs.JobError, match='prevhash'):
        jobs.parse_notify([p[0], 'zz'] + p[2:])
    with pytest.raises(jobs.JobError, match='merkle branch 1'):
        jobs.parse_notify(p[:4] + [[p[4][0], 'abcd']] + p[5:])


def test_difficulty_target_consistency():
    for d in (1, 8192, 0.5, 1.0 / 4096):
        t = jobs.target_of(d)
        assert abs(jobs.DIFF1_TARGET / t - d) / d < 1e-6
    assert jobs.target_of_nbits(0x1d00ffff) == jobs.DIFF1_TARGET
    with pytest.raises(jobs.JobError):
        jobs.target_of(0)
