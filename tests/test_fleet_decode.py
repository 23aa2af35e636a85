"""The compiled consumer decoder gives exactly what the reference rule gives (the per-element
`round(x / 10**d, d)` decoder it replaced), on real payloads and on random wire dicts with junk."""

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from mqtt_schema import bench as schema_bench
from mqtt_schema.bench import reference_unpack as ref_unpack
from mqtt_schema import codec, consumer, payloads
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
