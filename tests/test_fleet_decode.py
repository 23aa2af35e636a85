"""The consumer decoder (decode plans, the strict parser) gives exactly what the previous decoder
gives (cbor2/json + the per-element `round(x / 10**d, d)` rule), on real payloads from the agent's
builders and the load generator, on random wire dicts with junk and on mangled bytes."""

import random

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet import loadgen
from mqtt_schema import bench as schema_bench
from mqtt_schema.bench import reference_unpack as ref_unpack
from mqtt_schema import codec, consumer, payloads, plans, topics
from mqtt_schema import fields as F


def same(a, b):
    """Equal with types: 0.1 vs True or 1 vs 1.0 must not pass as equal."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


def test_real_payloads_decode_like_the_reference():
    for seed in range(1, 6):
        status = schema_bench.sample_status('S21', seed)
        sess = payloads.new_session()
        for kind, build in (('telemetry', payloads.build_telemetry), ('chips', payloads.build_chips)):
            wire = build(status, sess, 1795000000000)
            data = codec.encode(wire)
            assert same(consumer.decode(kind, data), ref_unpack(F.fields_for(kind), cbor2.loads(data)))


junk = st.none() | st.booleans() | st.integers(-(1 << 30), 1 << 30) | \
    st.floats(allow_nan=False, width=32) | st.text(max_size=3)
value = st.recursive(junk, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                     max_leaves=12)


def wire_dicts(defs, depth=0):
    keys = [f[0] for f in defs] + ['zz']
    inner = {'list:map:cboard': F.CBOARD, 'list:map:tboard': F.TBOARD, 'map:ctrl': F.CTRL,
             'map:tuner': F.TUNER}

    def field_value(f):
        sub = inner.get(f[2]) if f[0] != 'zz' else None
        if sub is not None and depth == 0:
            nested = wire_dicts(sub, 1)
            return nested if f[2].startswith('map:') else st.lists(nested | value, max_size=3)
        if f[2] == 'list:num':
            return st.lists(junk, max_size=8) | value
        return value
    fields = dict((f[0], f) for f in defs)
    fields['zz'] = ('zz', 'zz', 'any', '', None, 0, '')
    return st.fixed_dictionaries({}, optional=dict((k, field_value(fields[k])) for k in keys))


@settings(max_examples=300, deadline=None)
@given(wire_dicts(F.CHIPS) | wire_dicts(F.TELEMETRY))
def test_random_wire_dicts_decode_like_the_reference(wire):
    defs = F.CHIPS if 'bd' in wire and any(isinstance(b, dict) and 't' in b for b in
                                          (wire['bd'] if isinstance(wire['bd'], list) else [])) \
        else F.TELEMETRY
    for table in (F.CHIPS, F.TELEMETRY, defs):
        assert same(consumer.unpack(table, wire), ref_unpack(table, wire))


def test_bools_and_zero_stay_apart():
    # 0 and 1 equal False and True as dict keys: the cache must not mix them up
    wire = {'bd': [{'i': 0, 't': [1, True, 0, False, 1, None, 'x', 2.5], 'e': [True, 1, 0]}]}
    got = consumer.unpack(F.CHIPS, wire)['boards'][0]
    assert same(got['temp_c'], [0.1, True, 0.0, False, 0.1, None, 'x', 0.2])
    assert same(got['err_pct'], [True, 0.01, 0.0])


# -- decode plans and the strict parser: consumer.decode(topic, bytes) against the previous decoder
# (codec.loads, i.e. cbor2 or json, + the per-element rule) on bytes, real and mangled

def previous_decode(topic, data):
    payload = codec.loads(data)
    if not isinstance(payload, dict):
        raise ValueError('payload is not a map')
    return ref_unpack(F.fields_for(topics.split(topic)[2]), payload)


def _varied_status(model, seed):
    """sample_status plus what real rigs sometimes send: a reason, pools, a board's safety
    reason, a failed board sensor, a tuner run, no power reading."""
    status = schema_bench.sample_status(model, seed)
    rnd = random.Random(seed)
    if rnd.random() < 0.5:
        status.update(state='protect', reason='board 0 hot')
    if rnd.random() < 0.5:
        status['pools'] = [{'index': i, 'url': 'stratum+tcp://pool%d:3333' % i, 'state': 'up',
                            'connected': i == 0, 'difficulty': 65536.123456 * (i + 1),
                            'accepted': 10 * i, 'rejected': 0, 'stale': 1, 'last_share_age_s': 3.2}
                           for i in range(rnd.randint(1, 3))]
    if rnd.random() < 0.5:
        b = status['boards'][rnd.randrange(len(status['boards']))]
        b.update(safety='hot', safety_reason='chip 7 at 91.5 C', temps_c=[None, 61.7])
    if rnd.random() < 0.3:
        status['tuner'] = {'state': 'tuning', 'progress_pct': 42, 'target': 'power', 'eta_s': 611,
                           'best_j_per_th': 16.87, 'best_power_w': 3412}
    if rnd.random() < 0.3:
        status['power_w'] = None
    return status


def agent_payloads(n_seeds=8):
    """(topic, bytes) from the agent's own builders, for three models, both formats, live and
    replayed (h: true), plus the load generator's spliced payloads."""
    out = []
    for model in ('S21', 'S19JPRO', 'GAMMA'):
        for seed in range(1, n_seeds + 1):
            status = _varied_status(model, seed)
            sess = payloads.new_session()
            sess['seq'] = {'telemetry': seed * 1000, 'chips': seed * 7}
            root = 'hashpilot/v1/site%d/%s-%d/' % (seed % 3, model, seed)
            for fmt in codec.FORMATS:
                for kind, build in (('telemetry', payloads.build_telemetry),
                                    ('chips', payloads.build_chips)):
                    data = codec.encode(build(status, sess, 1795000000000 + seed), fmt)
                    out.append((root + kind, data))
                    out.append((root + kind, codec.mark_historical(data)))
                out.append((root + 'alarm', codec.encode(payloads.build_alarm(
                    sess, 'board_hot', 'raise', 'warning', 'board 1 hot', board=1, value=88.5), fmt)))
                out.append((root + 'status', codec.encode(payloads.build_birth(sess, 2, 'fw', model), fmt)))
    bodies = loadgen.Bodies('S21', variants=4)
    for v in range(4):
        for kind in ('telemetry', 'chips'):
            out.append(('hashpilot/v1/s/r%d/%s' % (v, kind), bodies.payload(kind, v, 5 + v, 1795000000000, 'b00t')))
    return out


def test_agent_payloads_decode_like_the_previous_decoder():
    data = agent_payloads()
    assert len(data) > 280
    for topic, payload in data:
        assert same(consumer.decode(topic, payload), previous_decode(topic, payload)), topic
    # the fast path did the work: plans were compiled, and the strict parser takes these bytes
    assert consumer._PLANS.table(F.TELEMETRY).shapes and consumer._PLANS.table(F.TBOARD).shapes
    if codec._strict is not None:
        topic, payload = data[0]
        assert codec._strict(payload, None, False)[1] == len(payload)


def _outcome(fn, *args):
    try:
        return 'ok', fn(*args)
    except ValueError:
        return 'error', None


def test_mangled_payloads_decode_like_the_previous_decoder_or_fail_cleanly():
    rnd = random.Random(16)
    real = [(t, p) for t, p in agent_payloads(2) if p[:1] != b'{']
    for i in range(3000):
        topic, payload = real[rnd.randrange(len(real))]
        b = bytearray(payload)
        op = rnd.randrange(4)
        pos = rnd.randrange(len(b))
        if op == 0:
            b[pos] = rnd.randrange(256)
        elif op == 1:
            del b[pos:]
        elif op == 2:
            b[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 4)))
        else:
            b[pos] ^= 1 << rnd.randrange(8)
        data = bytes(b)
        new = _outcome(consumer.decode, topic, data)
        try:
            old = ('ok', previous_decode(topic, data))
        except ValueError:
            old = ('error', None)
        except (OverflowError, RecursionError):
            old = ('error', None)    # the previous decoder crashed here; decode says ValueError
        assert new[0] == old[0] and same(new[1], old[1]), (topic, data.hex())


def only_json_types(x):
    if isinstance(x, dict):
        return all(k.__class__ is str and only_json_types(v) for k, v in x.items())
    if isinstance(x, list):
        return all(only_json_types(v) for v in x)
    return x is None or x.__class__ in (str, int, float, bool)


def loads_plain(data):
    obj, plain = codec.loads_plain(data)
    assert not plain or only_json_types(obj)
    return obj


@settings(max_examples=300, deadline=None)
@given(value, st.booleans())
def test_strict_parser_agrees_with_cbor2(obj, canonical):
    data = cbor2.dumps({'k': obj, 'bd': [obj]}, canonical=canonical)
    assert _outcome(loads_plain, data)[0] == _outcome(codec.loads, data)[0]
    assert same(loads_plain(data), codec.loads(data))


def test_odd_cbor_goes_to_cbor2():
    cases = [
        {'b': 1, 'a': 2},                      # not in canonical order
        {'a': 1.5, 'b': float('nan')},         # NaN (DAG-CBOR refuses it)
        {1: 2, 'a': 3},                        # a non-string key
        {'a': cbor2.CBORTag(42, b'\x00\x01')},   # tag 42, a CID to cbrrr
        {'a': 1 << 70},                        # a bignum
        {'a': cbor2.CBORSimpleValue(13)},      # equals 13 as a dict key
    ]
    for obj in cases:
        data = cbor2.dumps(obj)
        assert same(loads_plain(data), cbor2.loads(data))
    trailing = cbor2.dumps({'a': 1}) + b'\x01'
    assert loads_plain(trailing) == cbor2.loads(trailing) == {'a': 1}


def test_values_that_equal_ints_are_not_unscaled():
    # cbor2's Decimal (tag 4), Fraction (tag 30) and simple values equal cached ints as dict keys;
    # the previous decoder returned them unchanged, and so does decode
    from decimal import Decimal
    from fractions import Fraction
    consumer.decode('chips', codec.encode({'bd': [{'t': [756, 13, 30]}]}))     # fill the cache
    for odd in (Decimal(756), Fraction(13), cbor2.CBORSimpleValue(13)):
        data = cbor2.dumps({'v': 1, 'bd': [{'i': 0, 't': [odd, 30], 'e': [odd]}], 'x': odd})
        got = consumer.decode('chips', data)
        assert same(got, previous_decode('chips', data))
        assert got['boards'][0]['temp_c'][0] is not None and got['boards'][0]['temp_c'][0] == odd


def test_many_shapes_stay_right_past_the_plan_limit():
    keys = [f[0] for f in F.TELEMETRY]
    rnd = random.Random(3)
    for i in range(plans.MAX_SHAPES * 2 + 10):
        wire = dict((k, rnd.randint(2, 9999)) for k in rnd.sample(keys, rnd.randint(1, len(keys)))
                    if not F.fields_for('telemetry')[keys.index(k)][2].startswith(('map', 'list')))
        wire['x%d' % i] = i                      # unknown keys, kept by name
        data = codec.encode(wire)
        for _ in range(2):      # planned on the second sighting
            assert same(consumer.decode('telemetry', data), previous_decode('telemetry', data))
    assert len(consumer._PLANS.table(F.TELEMETRY).shapes) <= plans.MAX_SHAPES


def test_bignum_where_a_number_belongs_is_a_clear_error():
    data = cbor2.dumps({'v': 1, 'seq': 1, 'ts': 1, 'boot_id': 'b', 'jth': 1 << 2000, 'bd': []})
    with pytest.raises(OverflowError):
        previous_decode('telemetry', data)      # the previous decoder crashed the consumer here
    with pytest.raises(ValueError, match='undecodable value'):
        consumer.decode('telemetry', data)


def test_decode_bench_reports_every_column():
    rep = schema_bench.decode_rates('S21', min_s=0.02, rigs=3)
    for kind in ('telemetry', 'chips'):
        r = rep[kind]
        for key in ('decode', 'previous_decode', 'decode_3_rigs', 'previous_decode_3_rigs',
                    'cbor2_loads', 'json_loads'):
            assert r[key] > 0, key
        assert r['speedup'] == round(r['decode'] / r['previous_decode'], 2)
        assert ('cbrrr_parse' in r) == (rep['parser'] == 'cbrrr')


def test_real_payloads_take_the_plans():
    # the fast path vouches for every payload an agent sends (meta, whose `fields` is a map of
    # its own, is decoded the previous way: once per connect)
    for topic, payload in agent_payloads(3):
        wire, plain = codec.loads_plain(payload)
        assert plain
        defs = F.fields_for(topics.split(topic)[2])
        try:
            consumer._PLANS.unpack(defs, wire)      # a plan is made on a shape's second sighting
        except plans.Unproven:
            pass
        consumer._PLANS.unpack(defs, wire)          # raises plans.Unproven if not vouched for


def _nest(depth, leaf=0):
    x = leaf
    for i in range(depth):
        x = [x] if i % 2 else {'a': x}
    return x


def test_deep_nesting_is_refused_as_cbor2_refuses_it():
    # cbor2 stops at 400 levels, cbrrr does not: a payload the plans cannot vouch for is decoded
    # the previous way, so a deep one is a ValueError as before, wherever it hides
    for depth in (3, 398, 399, 400, 5000):
        deep = _nest(depth)
        for kind, wire in (('telemetry', {'v': 1, 'zz': deep}), ('telemetry', {'v': 1, 'st': deep}),
                           ('telemetry', {'v': 1, 'bd': [{'i': 0, 'tb': [deep]}]}),
                           ('telemetry', {'v': 1, 'bd': [deep]}), ('telemetry', {'v': 1, 'ctl': {'cpu': deep}}),
                           ('chips', {'v': 1, 'bd': [{'i': 0, 'x': [[deep, 1]]}]})):
            data = cbor2.dumps(wire)     # canonical as written (codec.encode recurses too deep)
            assert depth > 400 or codec._strict is None or codec.loads_plain(data)[1]
            new = _outcome(consumer.decode, kind, data)
            old = _outcome(previous_decode, kind, data)
            assert new == old, (depth, kind)          # == (C): same() would recurse too deep
            if depth in (3, 5000):
                assert new[0] == ('ok' if depth == 3 else 'error')


_JUNK = (None, True, False, 0, 1, -1, 2.5, float('inf'), 'x', '', b'\x00', [], {}, [1, 2], {'a': 1},
         [[1]], {'e': 1}, _nest(450), _nest(3), 1 << 63, -(1 << 64) + 1, 12345, 'normal')


def _mutate(wire, rnd):
    """A copy of a wire dict with one change where the whole-message plans look: a value swapped
    for junk, a key dropped, renamed or added, a list made longer or shorter, in any map."""
    import copy
    w = copy.deepcopy(wire)
    maps = [w] + [m for v in w.values() for m in (v if isinstance(v, list) else [v]) if isinstance(m, dict)]
    m = rnd.choice(maps)
    key = rnd.choice(list(m))
    op = rnd.randrange(6)
    if op == 0:
        m[key] = rnd.choice(_JUNK)
    elif op == 1:
        del m[key]
    elif op == 2:
        m[key + rnd.choice('aq')] = m.pop(key)         # same length, another key
    elif op == 3:
        m['zz%d' % rnd.randrange(3)] = rnd.choice(_JUNK)
    elif isinstance(m[key], list) and m[key]:
        if op == 4:
            m[key].append(rnd.choice(m[key] + list(_JUNK)))
        else:
            m[key].pop(rnd.randrange(len(m[key])))
    else:
        m[key] = [m[key], rnd.choice(_JUNK)]
    return w


def test_whole_message_plans_decode_like_the_previous_decoder():
    # canonical payloads take the whole-message plans (nested maps read in place): every change
    # to a planned shape, in any map, decodes as the previous decoder decodes it, or fails as it does
    rnd = random.Random(161)
    for kind, build in (('telemetry', payloads.build_telemetry), ('chips', payloads.build_chips)):
        topic = 'hashpilot/v1/s/wm/' + kind
        for seed in (1, 2):
            wire = build(_varied_status('S21', seed), payloads.new_session(), 1795000000000)
            for _ in range(2):      # the plan for the real shape is made on its second sighting
                consumer.decode(topic, codec.encode(wire))
            for i in range(600):
                changed = _mutate(wire, rnd)
                data = cbor2.dumps(codec.canonical(changed))
                for _ in range(2):
                    new = _outcome(consumer.decode, topic, data)
                    old = _outcome(previous_decode, topic, data)
                    assert new[0] == old[0] and (new[0] == 'error' or same(new[1], old[1])), changed
        table = consumer._PLANS.table(F.fields_for(kind))
        if codec._strict is not None:
            assert any('FB' in fn.__code__.co_names for fn in table.canon.values()), kind


def test_bad_topics_are_a_clear_error():
    data = codec.encode(payloads.build_telemetry(schema_bench.sample_status('S21', 1), payloads.new_session(), 1))
    for bad in (['telemetry'], None, b'telemetry', 'nope', 'hashpilot/v1/s/r/nope'):
        with pytest.raises(ValueError):
            consumer.decode(bad, data)
