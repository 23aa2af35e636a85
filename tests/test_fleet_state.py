"""Fleet state model: rows, site totals, alarms, duplicates and history from real payloads."""

import pytest

from fleet import client as fclient
from fleet import state as fstate
from mqtt_schema import codec, payloads
from mqtt_schema import topics as T


def _status(hr_ghs, p_w, temps=(70.0, 72.0, 74.0), safety='ok', fan=60):
    boards = []
    for i, t in enumerate(temps):
        boards.append({'index': i, 'temps_c': [t - 10, t - 8], 'voltage_mv': 14400, 'enabled': True,
                       'safety': safety if i == 1 else 'ok',
                       'chips': [{'temp_c': t - c * 0.1, 'freq_mhz': 490.0, 'hashrate_ghs': hr_ghs / 30,
                                  'err_pct': 0.1} for c in range(10)]})
    return {'state': 'running', 'hashrate_ghs': hr_ghs, 'power_w': p_w,
            'fans': [{'duty_pct': fan, 'rpm': 4000}] * 4, 'tuner': {'state': 'done'},
            'boards': boards}


def _feed(st, site, rig, kind, payload, now_s=1000.0):
    return st.feed(T.topic(site, rig, kind), codec.encode(payload), now_s=now_s)


def test_rows_totals_alarms_and_duplicates():
    st = fstate.FleetState(clock=lambda: 1000.0)
    sess = {}
    for site, rig, hr, p in (('a', 'r1', 200000, 3500), ('a', 'r2', 100000, 3000), ('b', 'r1', 50000, 1000)):
        s = sess[(site, rig)] = payloads.new_session()
        assert _feed(st, site, rig, 'status', payloads.build_birth(s, 1, model='S21'))
        assert _feed(st, site, rig, 'telemetry', payloads.build_telemetry(_status(hr, p), s, ts_ms=10 ** 12))
    rows = st.rows(sort='jth')
    assert [r['key'] for r in rows] == ['a/r1', 'b/r1', 'a/r2']
    assert rows[0]['ths'] == pytest.approx(200.0) and rows[0]['jth'] == pytest.approx(17.5)
    assert rows[0]['hot_c'] == pytest.approx(74.0) and rows[0]['fan_pct'] == 60
    assert rows[0]['link'] == 'online' and rows[0]['model'] == 'S21' and rows[0]['tuner'] == 'done'
    tot = st.site_totals()
    assert tot['a']['ths'] == pytest.approx(300.0) and tot['a']['w'] == pytest.approx(6500.0)
    assert tot['a']['jth'] == pytest.approx(6500 / 300.0) and tot['b']['rigs'] == 1

    # An alarm raised then cleared; the log keeps both, the rig none.
    s = sess[('a', 'r2')]
    assert _feed(st, 'a', 'r2', 'alarm', payloads.build_alarm(s, 'board_hot', 'raise', 'warning', 'hot', board=1))
    assert st.rows(text='board_hot')[0]['key'] == 'a/r2'
    dup = payloads.build_alarm(s, 'fan', 'raise', 'critical', 'fan stopped')
    assert _feed(st, 'a', 'r2', 'alarm', dup)
    assert not _feed(st, 'a', 'r2', 'alarm', dup)        # QoS 1 redelivery dropped
    assert st.duplicates == 1
    assert _feed(st, 'a', 'r2', 'alarm', payloads.build_alarm(s, 'board_hot', 'clear', 'warning', 'ok'))
    assert st.rows(site='a', sort='alarms', reverse=True)[0]['alarms'] == ['fan']
    assert [a['id'] for a in st.alarms()] == ['board_hot', 'fan', 'board_hot']

    # Will -> offline, excluded from the site totals; junk is counted, not applied.
    assert _feed(st, 'b', 'r1', 'status', payloads.build_will(sess[('b', 'r1')], 1))
    assert st.site_totals()['b']['online'] == 0
    assert not st.feed(T.topic('b', 'r1', 'telemetry'), b'\xff\x00junk')
    assert st.rejected == 1


def test_stale_history_and_detail():
    now = [1000.0]
    st = fstate.FleetState(stale_s=30, clock=lambda: now[0])
    s = payloads.new_session()
    for i in range(5):
        _feed(st, 's', 'r', 'telemetry', payloads.build_telemetry(_status(1000.0 * (i + 1), 100), s,
                                                                    ts_ms=(1000 + 60 * i) * 1000), now_s=now[0])
    _feed(st, 's', 'r', 'chips', payloads.build_chips(_status(100, 1), s))
    d = st.rig_detail('s/r')
    assert [round(p[1], 3) for p in d['history']] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert len(d['chips']['boards']) == 3 and len(d['chips']['boards'][0]['temp_c']) == 10
    now[0] += 31
    assert st.rows()[0]['link'] == 'stale' and st.rows()[0]['age_s'] == pytest.approx(31)
    with pytest.raises(ValueError):
        st.rows(sort='nope')


def test_pool_shown_when_present():
    st = fstate.FleetState(clock=lambda: 1000.0)
    s = payloads.new_session()
    status = dict(_status(1000.0, 50.0), pools=[
        {'index': 0, 'url': 'stratum+tcp://main.pool.example:3333', 'state': 'down', 'connected': False,
         'accepted': 1, 'rejected': 0, 'stale': 0},
        {'index': 1, 'url': 'stratum+tcp://backup.example:3333', 'state': 'up', 'connected': True,
         'accepted': 5, 'rejected': 1, 'stale': 0}])
    tel = payloads.build_telemetry(status, s, ts_ms=10 ** 12)
    _feed(st, 'a', 'r', 'telemetry', tel)
    assert st.rows()[0]['pool'] == 'up backup.example:3333'
    from fleet import metrics
    text = metrics.exposition(metrics.registry_for(st))[0].decode()
    assert 'hashpilot_rig_pool_up{model="",pool="stratum+tcp://backup.example:3333",rig="r",site="a"} 1.0' in text
    assert 'pool="stratum+tcp://main.pool.example:3333",result="accepted",rig="r",site="a"} 1.0' in text
    assert fstate.pool_text({'boards': []}) is None


def test_commands_checked_before_sending():
    data, cid = fclient.build_command('set_power_target', {'w': 3000})
    assert codec.loads(data)['args'] == {'w': 3000} and cid
    with pytest.raises(ValueError):
        fclient.build_command('Bad-Op', {})
    with pytest.raises(ValueError):
        fclient.build_command('set_fan', {}, cmd_id='x' * 65)
    assert fclient.parse_broker('127.0.0.1:1884') == ('127.0.0.1', 1884)
    with pytest.raises(ValueError):
        fclient.parse_broker('h:99999')


def test_fleet_never_imports_agent():
    import os
    import re
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fleet')
    for d, _, files in os.walk(root):
        for name in files:
            if name.endswith('.py'):
                with open(os.path.join(d, name)) as f:
                    src = f.read()
                assert not re.search(r'^\s*(from|import)\s+agent\b', src, re.M), name


def test_chip_metrics_are_opt_in():
    from fleet import metrics
    from tests.fleetfake import FakeFleet
    st = fstate.FleetState()
    FakeFleet(n=2, chips_per_board=4).feed(st, 10 ** 12)
    plain = metrics.exposition(metrics.registry_for(st))[0].decode()
    chips = metrics.exposition(metrics.registry_for(st, chips=True))[0].decode()
    assert 'hashpilot_chip_' not in plain and 'hashpilot_board_temperature_max_celsius{' in plain
    lines = [ln for ln in chips.splitlines() if ln.startswith('hashpilot_chip_temperature_celsius{')]
    assert len(lines) == 2 * 3 * 4 and 'chip="3"' in lines[3] and 'board="0"' in lines[0]
