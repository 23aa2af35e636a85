"""MQTT schema: topics, builders, codec round trips, consumer decode, command parsing, doc, CLI."""

import json
import math
import os
import subprocess
import sys

import cbor2
import pytest
from hypothesis import given, settings, strategies as st

from hal import models
from mqtt_schema import bench, codec, consumer, doc, fields, payloads, topics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_topic_names_validated():
    assert topics.root('farm-1', 'rack3.s21') == 'hashpilot/v1/farm-1/rack3.s21/'
    assert topics.topic('a', 'b', 'cmd/result') == 'hashpilot/v1/a/b/cmd/result'
    assert topics.cmd_filter('a', 'b') == 'hashpilot/v1/a/b/cmd/+'
    topics.root('x' * 64, 'y')
    for site, rig in (('', 'r'), ('s', ''), ('a+b', 'r'), ('s', 'r#'), ('s/t', 'r'), ('x' * 65, 'r'),
                      (None, 'r'), ('s', 'tab\there')):
        with pytest.raises(ValueError):
            topics.root(site, rig)
    assert topics.split('hashpilot/v1/s/r/cmd/reboot') == ('s', 'r', 'cmd/reboot')
    assert topics.split('chips') == (None, None, 'chips')


def test_chips_arrays_are_scaled_ints_and_round_trip():
    status = bench.sample_status('S21', seed=3)
    s = payloads.new_session()
    wire = payloads.build_chips(status, s, ts_ms=123)
    assert wire['v'] == 1 and wire['seq'] == 1 and wire['ts'] == 123 and wire['boot_id'] == s['boot_id']
    assert len(wire['bd']) == 3 and all(len(b['t']) == 108 for b in wire['bd'])
    for b in wire['bd']:
        for key in ('t', 'f', 'hr', 'e'):
            assert all(v is None or type(v) is int for v in b[key])
    for fmt in ('cbor', 'json'):
        out = consumer.decode('hashpilot/v1/s/r/chips', codec.encode(wire, fmt))
        for board_in, board_out in zip(status['boards'], out['boards']):
            for chip, t, f, hr, e in zip(board_in['chips'], board_out['temp_c'], board_out['freq_mhz'],
                                         board_out['hashrate_ghs'], board_out['err_pct']):
                if chip['temp_c'] is None:
                    assert t is None
                else:
                    assert abs(t - chip['temp_c']) <= 0.05 + 1e-9
                assert abs(f - chip["freq_mhz"]) <= 0.05 + 1e-9
                assert abs(hr - chip['hashrate_ghs']) <= 0.5
                assert abs(e - chip['err_pct']) <= 0.005
            dead = [i for i, c in enumerate(board_in['chips']) if c['state'] != 'ok']
            assert [p[0] for p in board_out.get('abnormal', [])] == dead
            assert all(p[1] == 'dead' for p in board_out.get('abnormal', []))


def test_telemetry_summary_and_sequence_per_topic():
    status = bench.sample_status('S21', seed=5)
    s = payloads.new_session()
    t1 = payloads.build_telemetry(status, s)
    t2 = payloads.build_telemetry(status, s)
    c1 = payloads.build_chips(status, s)
    assert (t1['seq'], t2['seq'], c1['seq']) == (1, 2, 1)       # per topic
    assert payloads.new_session()['boot_id'] != s['boot_id']
    out = consumer.decode('telemetry', codec.encode(t2))
    b0 = status['boards'][0]
    ok = [c for c in b0['chips'] if c['state'] == 'ok']
    assert out['boards'][0]['chips_ok'] == len(ok)
    assert out['boards'][0]['temp_max_c'] == max(c['temp_c'] for c in ok)
    total = sum(c['hashrate_ghs'] for b in status['boards'] for c in b['chips'])
    assert abs(out['hashrate_ghs'] - total) <= 1
    assert out['fan_rpm'] == [f['rpm'] for f in status['fans']]
    assert out['ctrl']['load1'] == 0.42 and out['tuner']['state'] == 'idle'
    assert 'historical' not in out


def test_missing_and_non_finite_values_are_left_out():
    s = payloads.new_session()
    wire = payloads.build_telemetry({'power_w': float('nan'), 'boards': [
        {'index': 0, 'chips': [{'temp_c': float('inf'), 'freq_mhz': None}]}]}, s)
    assert 'p' not in wire and wire['hr'] == 0
    chips = payloads.build_chips({'boards': [{'chips': [{'temp_c': float('nan')}]}]}, s)
    assert chips['bd'][0]['t'] == [None]


def test_birth_will_meta_alarm_result():
    s = payloads.new_session('cafe0001')
    birth = consumer.decode('status', codec.encode(payloads.build_birth(s, 3, 'fw1', 'S21')))
    assert birth['online'] is True and birth['session_seq'] == 3 and birth['firmware'] == 'fw1'
    will = consumer.decode('status', codec.encode(payloads.build_will(s, 3), 'json'))
    assert will == {'v': 1, 'seq': 3, 'ts_ms': will['ts_ms'], 'online': False, 'boot_id': 'cafe0001',
                    'session_seq': 3}
    meta = consumer.decode('meta', codec.encode(payloads.build_meta(models.get('GAMMA'), s, fmt='json')))
    assert meta['model'] == 'GAMMA' and meta['f_nom_mhz'] == 525.0 and meta['chip_states'][1] == 'dead'
    assert meta['fields']['telemetry.bd']['e'] == ['err_pct', '%', 0.01]
    alarm = payloads.build_alarm(s, 'board_hot', 'raise', 'critical', 'board 1 at 96 C', board=1, value=96.2)
    assert consumer.decode('alarm', codec.encode(alarm))['board'] == 1
    with pytest.raises(ValueError):
        payloads.build_alarm(s, 'x', 'rise', 'critical', 'typo')
    res = consumer.decode('cmd/result', codec.encode(payloads.build_cmd_result(s, 'c9', False, 'busy')))
    assert res['ok'] is False and res['error'] == 'busy' and res['id'] == 'c9'


def test_unknown_fields_are_kept_for_forward_compatibility():
    s = payloads.new_session()
    wire = payloads.build_alarm(s, 'a', 'clear', 'info', 'ok')
    wire['new_field'] = [1, 2]
    out = consumer.decode('alarm', cbor2.dumps(wire))
    assert out['new_field'] == [1, 2] and out['event'] == 'clear'


def test_historical_marking_keeps_format():
    s = payloads.new_session()
    for fmt in ('cbor', 'json'):
        data = codec.encode(payloads.build_alarm(s, 'a', 'raise', 'info', 'm'), fmt)
        marked = codec.mark_historical(data)
        assert codec.detect(marked) == fmt
        assert consumer.decode('alarm', marked)['historical'] is True


def test_decode_rejects_junk_with_reason():
    with pytest.raises(ValueError):
        consumer.decode('chips', b'\xff\xff')
    with pytest.raises(ValueError):
        consumer.decode('chips', b'[1,2]')
    with pytest.raises(ValueError):
        consumer.decode('nonsense', cbor2.dumps({}))


@pytest.mark.parametrize('data,word', [
    (b'{"id": "c1", "args": {"mhz": 500}}', None),
    (cbor2.dumps({'id': 'c2', 'args': {'duty_pct': 40}, 'ts': 5}), None),
    (b'', 'empty'),
    (b'{"args": {}}', 'id'),
    (b'{"id": ""}', 'id'),
    (b'{"id": "c", "args": [1]}', 'args'),
    (b'{"id": "c", "v": 2}', 'version'),
    (b'{"id": "c", "ts": -1}', 'ts'),
    (b'[1, 2]', 'map'),
    (b'{"id": "c"' , 'undecodable'),
    (b'\x1f\x00', 'undecodable'),
    (b'{"id": "' + b'x' * 9000 + b'"}', 'larger'),
])
def test_parse_command(data, word):
    cmd, reason = consumer.parse_command('set_freq', data)
    if word is None:
        assert reason is None and cmd['op'] == 'set_freq' and cmd['id'] in ('c1', 'c2')
    else:
        assert cmd is None and word in reason


def test_parse_command_bad_op():
    for op in ('', 'Reboot', 'a/b', 'result', 'x' * 33, None):
        cmd, reason = consumer.parse_command(op, b'{"id": "c"}')
        assert cmd is None and reason


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_parse_command_never_raises_on_junk(data):
    cmd, reason = consumer.parse_command('reboot', data)
    assert (cmd is None) != (reason is None)


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
                    max_leaves=20))
def test_parse_command_any_cbor_value(value):
    cmd, reason = consumer.parse_command('reboot', cbor2.dumps(value))
    assert (cmd is None) != (reason is None)


def test_doc_generated_from_field_definitions_and_up_to_date():
    text = doc.markdown()
    for kind in fields.TOPIC_ORDER:
        assert '### `%s`' % kind in text
        for f in fields.TOPICS[kind][0]:
            assert '| `%s` | %s |' % (f[0], f[1]) in text
    cddl = doc.cddl()
    assert 'chips = {' in cddl and 'cboard = {' in cddl and '? h: bool' in cddl
    assert 'never renamed' in text or 'no field is renamed' in text
    with open(os.path.join(ROOT, 'docs', 'mqtt-schema.md')) as f:
        assert f.read() == text, 'docs/mqtt-schema.md is stale: run hashpilot schema doc'


def test_cli_decode_and_doc(tmp_path):
    s = payloads.new_session()
    data = codec.encode(payloads.build_chips(bench.sample_status('GAMMA'), s))
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, '-m', 'agent.cli', 'schema', 'decode', '--topic', 'x/chips', '-'],
                       input=data, capture_output=True, cwd=ROOT, env=env)
    assert p.returncode == 1 and b'topic' in p.stderr    # not a hashpilot topic kind
    p = subprocess.run([sys.executable, '-m', 'agent.cli', 'schema', 'decode', '--topic',
                        'hashpilot/v1/s/r/chips', '-'], input=data, capture_output=True, cwd=ROOT, env=env)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out['boards'][0]['freq_mhz'][0] == pytest.approx(
        bench.sample_status('GAMMA')['boards'][0]['chips'][0]['freq_mhz'], abs=0.05)
    dest = tmp_path / 'ref.md'
    p = subprocess.run([sys.executable, '-m', 'agent.cli', 'schema', 'doc', '--out', str(dest)],
                       capture_output=True, cwd=ROOT, env=env)
    assert p.returncode == 0 and dest.read_text() == doc.markdown()


def test_bench_measures_cbor_smaller_than_json():
    r = bench.measure('S21')
    assert r['chips'] == 324
    assert 0 < r['chips_cbor'] < r['chips_json'] and 0 < r['telemetry_cbor'] < r['telemetry_json']
    assert not math.isnan(r['chips_cbor'] / r['chips'])
