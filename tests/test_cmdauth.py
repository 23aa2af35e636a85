"""Command freshness, replay refusal and HMAC-SHA256 signing (agent/cmdauth.py, issue 17)."""

import hashlib
import hmac
import random

import pytest

from mqtt_schema.cmdauth import CommandGuard, _hmac_sha256, parse_key, sign, signed_bytes

KEY = b'operator-secret-0123456789'
NOW = 1_800_000_000_000


def test_hmac_matches_the_standard_library():
    rnd = random.Random(1)
    for n in (0, 1, 16, 63, 64, 65, 200):
        key = bytes(rnd.getrandbits(8) for _ in range(n))
        msg = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 300)))
        assert _hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_signature_covers_op_id_ts_and_args():
    sig = sign(KEY, 'set_fan', 'c1', NOW, {'mode': 'manual', 'duty_pct': 80})
    g = CommandGuard(60, keys=[KEY])
    assert g.check('set_fan', 'c1', NOW, {'duty_pct': 80, 'mode': 'manual'}, sig, NOW) is None  # key order free
    for op, cid, ts, args in (('set_frequency', 'c2', NOW, {'mode': 'manual', 'duty_pct': 80}),
                              ('set_fan', 'c3', NOW, {'mode': 'manual', 'duty_pct': 81}),
                              ('set_fan', 'c4', NOW + 1, {'mode': 'manual', 'duty_pct': 80})):
        assert g.check(op, cid, ts, args, sig, NOW) == 'bad signature'
    assert g.check('set_fan', 'c5', NOW, {}, None, NOW).startswith('unsigned command refused')
    assert g.check('set_fan', 'c6', NOW, {}, 'zz' * 32, NOW) == 'bad signature'


def test_any_configured_key_verifies():
    g = CommandGuard(60, keys=[b'k' * 20, KEY])
    assert g.check('rebirth', 'x', NOW, {}, sign(KEY, 'rebirth', 'x', NOW, {}), NOW) is None
    assert g.check('rebirth', 'y', NOW, {}, sign(b'other key 1234567', 'rebirth', 'y', NOW, {}), NOW) \
        == 'bad signature'


def test_ts_required_and_window():
    g = CommandGuard(60)
    assert g.check('rebirth', 'a', None, {}, None, NOW) == "'ts' (Unix ms) is required"
    assert 'expired' in g.check('rebirth', 'b', NOW - 61_000, {}, None, NOW)
    assert 'future' in g.check('rebirth', 'c', NOW + 61_000, {}, None, NOW)
    for bad in (2 ** 1100, -1, 1.5e12, True, '1800000000000'):
        assert g.check('rebirth', 'd', bad, {}, None, NOW) is not None
    assert g.check('rebirth', 'e', NOW - 59_000, {}, None, NOW) is None


def test_replayed_id_refused_within_window():
    g = CommandGuard(60)
    assert g.check('identify', 'same', NOW, {}, None, NOW) is None
    assert 'replayed' in g.check('identify', 'same', NOW, {}, None, NOW + 1000)
    assert 'replayed' in g.check('identify', 'same', NOW + 50_000, {}, None, NOW + 50_000)
    # the original message replayed after the window is too old anyway
    assert 'expired' in g.check('identify', 'same', NOW, {}, None, NOW + 61_000)
    assert g.get_status()['replays'] == 2


def test_memory_bounded_under_flood():
    g = CommandGuard(60, max_seen=1000)
    for i in range(20000):
        assert g.check('identify', 'id%d' % i, NOW, {}, None, NOW + i) is None
    assert len(g._seen) <= 1000 and len(g._order) - g._head <= 1000 and len(g._order) <= 3000


def test_signed_bytes_are_canonical_cbor():
    a = signed_bytes('set_fan', 'i', 5, {'mode': 'auto', 'duty_pct': 1})
    b = signed_bytes('set_fan', 'i', 5, {'duty_pct': 1, 'mode': 'auto'})
    assert a == b and a[:1] == b'\xa4'      # a 4-entry CBOR map


def test_key_parsing():
    assert parse_key('ab' * 32) == b'\xab' * 32
    assert parse_key('a long enough passphrase\n') == b'a long enough passphrase'
    with pytest.raises(ValueError):
        parse_key('short')


def test_operator_tools_sign_what_the_guard_accepts(tmp_path, monkeypatch):
    from fleet import client as fclient
    from mqtt_schema import codec
    keyfile = tmp_path / 'op.key'
    keyfile.write_text('ab' * 32 + '\n')
    monkeypatch.setenv('HASHPILOT_CMD_KEY_FILE', str(keyfile))
    key = fclient.load_cmd_key()
    data, cid = fclient.build_command('set_fan', {'mode': 'manual', 'duty_pct': 70}, key=key)
    body = codec.loads(data)
    g = CommandGuard(60, keys=[b'\xab' * 32])
    assert g.check('set_fan', cid, body['ts'], body['args'], body['sig'], body['ts']) is None
    unsigned, cid2 = fclient.build_command('set_fan', {'mode': 'auto'})
    b2 = codec.loads(unsigned)
    assert 'sig' not in b2
    assert g.check('set_fan', cid2, b2['ts'], b2['args'], None, b2['ts']).startswith('unsigned')


MPY_SCRIPT = r'''
from mqtt_schema.cmdauth import CommandGuard, sign, parse_key
key = parse_key('ab' * 32)
s = sign(key, 'set_fan', 'c1', 1800000000000, {'mode': 'manual', 'duty_pct': 70})
print(s)
g = CommandGuard(60, keys=[key])
print(g.check('set_fan', 'c1', 1800000000000, {'duty_pct': 70, 'mode': 'manual'}, s, 1800000000500))
print(g.check('set_fan', 'c1', 1800000000000, {'duty_pct': 70, 'mode': 'manual'}, s, 1800000001000))
print(g.check('set_fan', 'c2', 1800000000000, {}, None, 1800000000000))
print(g.check('set_fan', 'c3', None, {}, None, 1800000000000))
'''


def test_same_signatures_and_verdicts_under_micropython(tmp_path):
    import os
    import subprocess
    import sys
    from tests import mpyunix
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = tmp_path / 'check.py'
    path.write_text(MPY_SCRIPT)
    cpy = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=root,
                         env=dict(os.environ, PYTHONPATH=root), timeout=60)
    assert cpy.returncode == 0, cpy.stderr
    mods = ['mqtt_schema/__init__.py', 'mqtt_schema/codec.py', 'mqtt_schema/cmdauth.py']
    mpy = mpyunix.run(path, mods, tmp_path / 'lib', vendor=True, timeout=120)
    assert mpy.returncode == 0, mpy.stderr + mpy.stdout
    assert mpy.stdout.splitlines() == cpy.stdout.splitlines()
