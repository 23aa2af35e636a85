"""Command registry: malformed, unknown, out-of-range and expired commands are refused; each
feature registers its own commands; every front-end submits through the same path."""

import json

import cbor2
import pytest

from agent import commands
from agent.autotune.validate import validate_autotune, validate_set_power_target
from agent.commands import Registry, expired
from agent.control import validate_set_frequency
from agent.fan import validate_set_fan
from agent.safety.supervisor import validate_reset_safety

FEATURE_VALIDATORS = {
    'set_fan': validate_set_fan, 'set_frequency': validate_set_frequency,
    'identify': commands.validate_identify, 'rebirth': commands.no_args,
    'reset_safety': validate_reset_safety, 'autotune': validate_autotune,
    'set_power_target': validate_set_power_target,
}


def validate(op, cid, body, ctx):
    reg = Registry()
    for name, v in FEATURE_VALIDATORS.items():
        reg.register(name, v, lambda a: a, ctx)
    return reg.validate(op, cid, body)

CTX = {'boards': 3, 'chips_per_board': 108, 'freq_min_mhz': 50, 'freq_max_mhz': 700,
       'fan_min_pct': 10}
NOW = 1_800_000_000.0


@pytest.mark.parametrize('op,body,reason', [
    ('nope', {'id': 'a'}, 'unknown command'),
    ('set_fan', [], 'must be a map'),
    ('set_fan', {'mode': 'auto', 'id': None}, 'id must be'),
    ('set_fan', {'id': '', 'mode': 'auto'}, 'id must be'),
    ('set_fan', {'id': 'x' * 65, 'mode': 'auto'}, 'id must be'),
    ('set_fan', {'id': 'a', 'mode': 'turbo'}, 'mode must be'),
    ('set_fan', {'id': 'a', 'mode': 'manual'}, 'needs duty_pct'),
    ('set_fan', {'id': 'a', 'mode': 'manual', 'duty_pct': 101}, 'outside'),
    ('set_fan', {'id': 'a', 'mode': 'manual', 'duty_pct': 5}, 'outside'),
    ('set_fan', {'id': 'a', 'mode': 'manual', 'duty_pct': True}, 'needs duty_pct'),
    ('set_fan', {'id': 'a', 'mode': 'manual', 'duty_pct': float('nan')}, 'needs duty_pct'),
    ('set_fan', {'id': 'a', 'mode': 'auto', 'duty_pct': 50}, 'only for manual'),
    ('set_fan', {'id': 'a', 'mode': 'auto', 'x': 1}, 'unknown field'),
    ('set_frequency', {'id': 'a', 'mhz': '500'}, 'mhz must be'),
    ('set_frequency', {'id': 'a', 'mhz': 9000}, 'outside the family limits'),
    ('set_frequency', {'id': 'a', 'mhz': 500, 'board': 3}, 'board must be'),
    ('set_frequency', {'id': 'a', 'mhz': 500, 'chip': 1}, 'chip needs board'),
    ('set_frequency', {'id': 'a', 'mhz': 500, 'board': 0, 'chip': 108}, 'chip must be'),
    ('identify', {'id': 'a', 'duration_s': 0}, 'duration_s'),
    ('rebirth', {'id': 'a', 'now': 1}, 'unknown field'),
])
def test_bad_commands_are_refused_with_reason(op, body, reason):
    if isinstance(body, dict):
        body = dict(body)
        cid = body.pop('id', 'a')
    else:
        cid = 'a'
    cmd, err = validate(op, cid, body, CTX)
    assert cmd is None
    assert reason in err


def test_good_commands():
    cmd, err = validate('set_frequency', 'c1', {'mhz': 500, 'board': 1, 'chip': 7}, CTX)
    assert err is None and cmd == {'op': 'set_frequency', 'id': 'c1',
                                   'args': {'mhz': 500.0, 'board': 1, 'chip': 7}}
    cmd, err = validate('set_fan', 'c2', {'mode': 'manual', 'duty_pct': 70}, CTX)
    assert cmd['args'] == {'mode': 'manual', 'duty_pct': 70.0}
    assert validate('rebirth', 'r', {}, CTX)[0]['op'] == 'rebirth'


def test_expiry():
    assert expired(None, NOW, 60) is None
    assert expired(NOW * 1000 - 30000, NOW, 60) is None
    assert 'expired' in expired(NOW * 1000 - 90000, NOW, 60)
    assert 'future' in expired(NOW * 1000 + 90000, NOW, 60)


TUNE_CTX = dict(CTX, power_min_w=1000, power_max_w=4000)


@pytest.mark.parametrize('op,args,reason', [
    ('autotune', {'action': 'go'}, 'action must be'),
    ('autotune', {'action': 'stop', 'profile': 'eco'}, 'stop takes no other'),
    ('autotune', {'profile': '../../etc/passwd'}, 'no paths'),
    ('autotune', {'mode': 'turbo'}, 'mode must be'),
    ('autotune', {'target': -5}, 'positive number'),
    ('set_power_target', {}, 'w must be'),
    ('set_power_target', {'w': 200}, 'outside'),
    ('set_power_target', {'w': 3000, 'x': 1}, 'unknown field'),
])
def test_bad_tuner_commands(op, args, reason):
    cmd, err = validate(op, 'id1', args, TUNE_CTX)
    assert cmd is None and reason in err


def test_good_tuner_commands():
    assert validate('autotune', 't', {'profile': 'eco', 'target': 3000}, TUNE_CTX)[0]['args'] == \
        {'action': 'start', 'profile': 'eco', 'target': 3000.0}
    assert validate('autotune', 't', {'action': 'stop'}, TUNE_CTX)[0]['args'] == {'action': 'stop'}
    assert validate('set_power_target', 't', {'w': 3300}, TUNE_CTX)[0]['args'] == {'w': 3300.0}


def test_submit_applies_once_validated_and_reports_refusals():
    applied = []

    def handler(a):
        if a['mode'] == 'manual' and a['duty_pct'] > 90:
            raise ValueError('refused by safety')
        applied.append(a)
        return {'done': True}

    reg = Registry()
    reg.register('set_fan', validate_set_fan, handler, lambda: {'fan_min_pct': 20})
    with pytest.raises(ValueError):
        reg.register('set_fan', validate_set_fan, handler)
    with pytest.raises(ValueError):
        reg.register('Bad-Op', validate_set_fan, handler)
    r = reg.submit('set_fan', {'mode': 'manual', 'duty_pct': 70}, source='api')
    assert r == {'ok': True, 'op': 'set_fan', 'id': 'api-1', 'source': 'api', 'error': None,
                 'result': {'done': True}}
    r = reg.submit('set_fan', {'mode': 'manual', 'duty_pct': 10}, source='api')
    assert not r['ok'] and 'outside 20..100' in r['error'] and r['id'] == 'api-2'
    r = reg.submit('set_fan', {'mode': 'manual', 'duty_pct': 95}, cid='x1')
    assert r['ok'] is False and r['error'] == 'refused by safety' and r['id'] == 'x1'
    r = reg.submit('set_fan', {'mode': 'auto'}, cid='old', ts_ms=int((NOW - 600) * 1000),
                   now_unix_s=NOW)
    assert not r['ok'] and 'expired' in r['error']
    assert applied == [{'mode': 'manual', 'duty_pct': 70.0}]
    assert reg.ops() == ['set_fan']


@pytest.mark.parametrize('encode', [cbor2.dumps, lambda p: json.dumps(p).encode()])
def test_refused_payload_keeps_its_id_in_cbor_and_json(encode):
    reg = Registry()
    reg.register('set_fan', validate_set_fan, lambda a: None, {'fan_min_pct': 20})
    r = reg.submit_payload('set_fan', encode({'v': 1, 'id': 'c-42', 'args': 'notamap'}))
    assert r['ok'] is False and r['id'] == 'c-42' and 'args' in r['error']
    r = reg.submit_payload('set_fan', encode({'v': 1, 'id': 'c-43', 'args': {'mode': 'turbo'}}))
    assert r['ok'] is False and r['id'] == 'c-43'
    r = reg.submit_payload('set_fan', encode({'v': 2, 'id': 'c-44'}))
    assert r['ok'] is False and r['id'] == 'c-44' and 'version' in r['error']
    r = reg.submit_payload('set_fan', b'\xff\x00junk')
    assert r['ok'] is False and r['id'] == ''
    r = reg.submit_payload('set_fan', encode({'v': 1, 'id': 'c-45', 'args': {'mode': 'auto'}}))
    assert r['ok'] is True and r['id'] == 'c-45' and r['source'] == 'mqtt'
