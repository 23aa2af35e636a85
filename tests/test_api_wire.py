"""cgminer RPC wire format and command dispatch (pure parts, no sockets): request forms, STATUS
codes, joined commands, access rules, write jobs, the field mapping from a telemetry status."""

import json

import pytest

from agent.api import handler, views, wire
from agent.api.frontend import RateAverages, identity
from agent.api.server import access_for, json_complete, parse_allow, parse_listen
from hal import models


def make_state(pools=None, dead=(), board_off=()):
    model = models.get('S21')
    boards = []
    for i in range(3):
        chips = []
        for j in range(108):
            state = 'off' if i in board_off else ('dead' if (i, j) in dead else 'ok')
            chips.append({'temp_c': 60.0 + (j % 10), 'freq_mhz': 490.0,
                          'hashrate_ghs': 0.0 if state != 'ok' else 625.0,
                          'err_pct': 0.5, 'state': state})
        hr = sum(c['hashrate_ghs'] for c in chips if c['state'] == 'ok')
        boards.append({'index': i, 'chips': chips, 'temps_c': [40.4, 55.6], 'voltage_mv': 14400,
                       'enabled': i not in board_off, 'safety': 'normal', 'safety_reason': None,
                       'freq_cap_pct': 100, 'hashrate_ghs': hr})
    status = {'state': 'normal', 'hashrate_ghs': sum(b['hashrate_ghs'] for b in boards),
              'power_w': 3301.4, 'fans': [{'duty_pct': 60.0, 'rpm': 5000 + k} for k in range(4)],
              'boards': boards}
    return {'when_s': 1796200000.0, 'elapsed_s': 125.0, 'identity': identity('S21', 'r1'),
            'model': model, 'status': status, 'board_ids': ['S21-A', 'S21-B', 'S21-C'],
            'chain_urls': ['/dev/ttyS1', '/dev/ttyS2', '/dev/ttyS3'], 'ghs_av': 200000.0,
            'ghs_30m': 201000.0, 'pools': pools or [], 'alarms': [],
            'config': {'telemetry_s': 10, 'writes': False, 'power_target_w': None}}


def ask(text, state=None, access='read', writes=False):
    kind, val = handler.respond(wire.parse_request(text), state or make_state(), access, writes)
    return kind, val


def reply_json(text, **kw):
    kind, val = ask(text, **kw)
    assert kind == 'reply' and val.endswith(b'\x00') and val.count(b'\x00') == 1
    return json.loads(val[:-1])


# -- requests ------------------------------------------------------------------------------------

def test_request_forms():
    assert wire.parse_request(b'{"command":"summary"}')['cmds'] == ['summary']
    r = wire.parse_request(b'{"command":"switchpool","parameter":1}')
    assert r['json'] and r['param'] == '1'
    r = wire.parse_request(b'switchpool|1\n')
    assert not r['json'] and r['cmds'] == ['switchpool'] and r['param'] == '1'
    r = wire.parse_request(b'{"command":"stats","new_api":true}')
    assert r['extra'] == {'new_api': True}
    r = wire.parse_request(b'summary+devs+pools')
    assert r['joined'] and r['cmds'] == ['summary', 'devs', 'pools'] and r['param'] is None


@pytest.mark.parametrize('data,err', [
    (b'{"command":', 'invjson'), (b'[1,2]', None), (b'{"cmd":"x"}', 'miscmd'),
    (b'{"command":5}', 'invcmd'), (b'{"command":"x","parameter":' + b'[' * 5000 + b'}', 'invjson'),
    (b'\xff\xfe{', 'invutf'), (b'{"command":"' + b'+'.join([b'version'] * 40) + b'"}', 'invcmd'),
])
def test_bad_requests_get_error_codes(data, err):
    r = wire.parse_request(data)
    if err is None:   # not JSON: a text command named '[1,2]' -> Invalid command later
        assert r['cmds'] == ['[1,2]']
        return
    assert r['error'] == err


def test_json_complete_tracks_braces_outside_strings():
    assert json_complete(b'{"command":"summary"}')
    assert not json_complete(b'{"command":"sum')
    assert not json_complete(b'{"command":"}"')
    assert json_complete(b'{"a":"\\"}"}')


# -- replies ------------------------------------------------------------------------------------

def test_status_codes_and_trailing_nul():
    v = reply_json('{"command":"version"}')
    assert v['STATUS'][0]['STATUS'] == 'S' and v['STATUS'][0]['Code'] == 22
    assert v['STATUS'][0]['Msg'] == 'CGMiner versions' and v['id'] == 1
    assert v['VERSION'][0]['Type'] == 'Antminer S21 (hashpilot)'
    bad = reply_json('{"command":"nosuch"}')
    assert bad['STATUS'][0]['Code'] == 14 and bad['STATUS'][0]['STATUS'] == 'E'
    assert 'Description' not in bad['STATUS'][0]   # cgminer hides it from random probes
    nop = reply_json('{"command":"pools"}')
    assert nop['STATUS'][0]['Code'] == 8 and nop['STATUS'][0]['Msg'] == 'No pools'


def test_text_reply_layout_and_escaping():
    kind, val = ask('summary|')
    text = val[:-1].decode()
    st, summ, tail = text.split('|')
    assert st.startswith('STATUS=S,') and 'Code=11' in st and summ.startswith('SUMMARY,Elapsed=125')
    assert tail == ''
    pools = [{'url': 'stratum+tcp://a,b=c|d:3333', 'user': 'u', 'alive': True, 'active': True}]
    kind, val = ask('pools|', state=make_state(pools=pools))
    assert b'URL=stratum+tcp://a\\,b\\=c\\|d:3333' in val


def test_joined_commands_answer_each_once_and_refuse_writes():
    r = reply_json('{"command":"summary+devs+summary+restart+nosuch"}', access='write')
    assert set(r) == {'summary', 'devs', 'restart', 'nosuch', 'id'}
    assert r['summary'][0]['SUMMARY'][0]['GHS 5s'] == '202500.00'
    assert r['restart'][0]['STATUS'][0]['Code'] == 45
    assert r['nosuch'][0]['STATUS'][0]['Code'] == 14


def test_stats_fields_from_the_status():
    st = make_state(dead={(1, 5), (1, 6)})
    s = reply_json('{"command":"stats"}', state=st)['STATS']
    assert s[0]['Type'] == 'Antminer S21 (hashpilot)'
    rec = s[1]
    assert [rec['chain_acn%d' % i] for i in (1, 2, 3)] == [108, 106, 108]
    assert rec['chain_acs2'].count('x') == 2 and rec['chain_acs2'].startswith(' oooooxx')
    assert rec['fan_num'] == 4 and rec['fan1'] == 5000 and rec['fan4'] == 5003
    assert rec['temp_pcb1'] == '40-56' and rec['temp_chip1'] == '69-69-69-69'
    assert rec['chain_rate2'] == '%.2f' % (106 * 625.0)
    assert rec['total_rateideal'] == pytest.approx(322 * 490 * 1276 / 1000.0, abs=0.01)
    n = reply_json('{"command":"stats","new_api":true}', state=st)
    assert n['STATUS']['STATUS'] == 'S'
    chain = n['STATS'][0]['chain']
    assert [c['asic_num'] for c in chain] == [108, 106, 108] and chain[0]['sn'] == 'S21-A'
    assert chain[0]['temp_pcb'] == [40, 56] and n['STATS'][0]['fan'] == [5000, 5001, 5002, 5003]


def test_board_off_reports_no_chips_and_dead_device():
    st = make_state(board_off={2})
    devs = reply_json('{"command":"devs"}', state=st)
    assert devs['STATUS'][0]['Msg'] == '3 ASC(s)'
    assert devs['DEVS'][2]['Status'] == 'Dead' and devs['DEVS'][2]['Enabled'] == 'N'
    assert devs['DEVS'][0]['MHS 5s'] == pytest.approx(108 * 625.0 * 1000)


def test_fans_temps_power_check_coin_config():
    assert reply_json('{"command":"fans"}')['FANS'][3] == {'FAN': 3, 'ID': 3, 'RPM': 5003, 'Speed': 60}
    t = reply_json('{"command":"temps"}')['TEMPS'][0]
    assert t['Board'] == 56.0 and t['Chip'] == 69.0
    assert reply_json('{"command":"power"}')['POWER'][0]['Watts'] == 3301
    assert reply_json('{"command":"check","parameter":"restart"}')['CHECK'][0] == {'Exists': 'Y', 'Access': 'N'}
    assert reply_json('{"command":"check","parameter":"restart"}', access='write')['CHECK'][0]['Access'] == 'Y'
    assert reply_json('{"command":"check","parameter":"foo"}')['CHECK'][0]['Exists'] == 'N'
    assert reply_json('{"command":"check"}')['STATUS'][0]['Code'] == 71
    assert reply_json('{"command":"coin"}')['COIN'][0]['Hash Method'] == 'sha256'
    assert reply_json('{"command":"config"}')['CONFIG'][0]['ASC Count'] == 3


# -- writes ---------------------------------------------------------------------------------------

def test_write_access_rules():
    deny = reply_json('{"command":"restart"}', access='read', writes=True)
    assert deny['STATUS'][0]['Code'] == 45 and "'restart'" in deny['STATUS'][0]['Msg']
    off = reply_json('{"command":"restart"}', access='write', writes=False)
    assert off['STATUS'][0]['Code'] == 205
    kind, job = ask('{"command":"powertarget","parameter":"3000"}', access='write', writes=True)
    assert kind == 'write' and job['op'] == 'set_power_target' and job['args'] == {'w': 3000.0}
    bad = reply_json('{"command":"powertarget","parameter":"lots"}', access='write', writes=True)
    assert bad['STATUS'][0]['Code'] == 31
    kind, val = ask('switchpool|0', access='write', writes=True)
    assert b'Code=8' in val and b'No pools' in val
    pools = [{'url': 'stratum+tcp://p0:3333'}, {'url': 'stratum+tcp://p1:3333'}]
    kind, val = ask('switchpool|7', state=make_state(pools=pools), access='write', writes=True)
    assert b'Code=26' in val and b'range is 0 - 1' in val
    kind, job = ask('switchpool|1', state=make_state(pools=pools), access='write', writes=True)
    assert job['op'] == 'switch_pool' and job['args'] == {'pool': 1}


def test_write_outcomes():
    st = make_state()
    job = {'cmd': 'restart', 'op': 'restart', 'args': {}, 'json': True}
    assert handler.write_reply(job, True, None, st) == b'{"STATUS":"RESTART","id":1}\x00'
    job = {'cmd': 'powertarget', 'op': 'set_power_target', 'args': {'w': 1.0}, 'json': True}
    r = json.loads(handler.write_reply(job, False, 'w 1.0 outside 700..4000 W', st)[:-1])
    assert r['STATUS'][0]['Code'] == 203 and 'outside 700..4000' in r['STATUS'][0]['Msg']


# -- access list, listen address, averages ------------------------------------------------------

def test_api_allow_like_cgminer():
    allow = parse_allow(['W:127.0.0.1', '10.0.0/24', 'R:192.168/16', '::1'])
    assert access_for(allow, '127.0.0.1') == 'write'
    assert access_for(allow, '::ffff:127.0.0.1') == 'write'
    assert access_for(allow, '10.0.0.77') == 'read'
    assert access_for(allow, '192.168.5.5') == 'read'
    assert access_for(allow, '10.0.1.1') is None
    assert access_for(allow, '::1') == 'read'
    assert access_for(parse_allow(['0/0']), '8.8.8.8') == 'read'
    with pytest.raises(ValueError):
        parse_allow(['W:300.1.1.1'])
    assert parse_listen('0.0.0.0:4028') == ('0.0.0.0', 4028)
    assert parse_listen('[::]:4028') == ('::', 4028)
    for bad in ('4028', 'host:4028', '1.2.3.4:99999'):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_rate_averages():
    r = RateAverages(window_s=10.0)
    for t in range(0, 21):
        r.add(float(t), 100.0 if t < 10 else 200.0)
    assert r.average() == pytest.approx(150.0, abs=5.0)
    assert r.window() == pytest.approx(200.0, abs=10.0)
    # fast polls (0.25 s) for an hour: the 30-minute window still spans 30 minutes
    r = RateAverages()
    for k in range(4 * 3600):
        r.add(k / 4.0, 200.0 if k >= 4 * 2700 else 100.0)
    assert r.window() == pytest.approx(150.0, abs=2.0)
    assert r.average() == pytest.approx(125.0, abs=1.0)


def test_views_cover_every_read_command():
    st = make_state()
    for name in views.READ:
        secs = views.read_reply(name, st, None, {})
        assert secs[0][0] == 'STATUS'


# -- web pages ------------------------------------------------------------------------------------

def test_web_pages_map_alarms_and_state():
    from agent.api import web
    st = make_state()
    st['alarms'] = [{'id': 'board1.fan_failed', 'severity': 'critical', 'message': 'fan 2 stopped'},
                    {'id': 'rig.identify', 'severity': 'info', 'message': 'identify'},
                    {'id': 'board0.chips_missing', 'severity': 'warning', 'message': '100 of 108'}]
    items = web.alarm_items(st['alarms'])
    errs = [(i['type'], i['msg']) for i in items if i['status'] == 'e']
    assert errs == [('fans', 'board1.fan_failed: fan 2 stopped'),
                    ('rate', 'board0.chips_missing: 100 of 108')]
    assert {i['type'] for i in items if i['status'] == 's'} == {'network', 'temp'}
    out = web.respond(b'GET /cgi-bin/get_blink_status.cgi HTTP/1.1\r\n\r\n', st, {})
    assert out.startswith(b'HTTP/1.1 200 OK\r\n') and out.endswith(b'{"blink":true}')
    out = web.respond(b'GET /cgi-bin/stats.cgi?x=1 HTTP/1.1\r\n\r\n', st, {})
    stats = json.loads(out.split(b'\r\n\r\n', 1)[1])
    assert [c['asic_num'] for c in stats['STATS'][0]['chain']] == [108, 108, 108]
    conf = json.loads(web.respond(b'GET /cgi-bin/get_miner_conf.cgi HTTP/1.0\r\n\r\n',
                                  make_state(board_off={0, 1, 2}), {}).split(b'\r\n\r\n', 1)[1])
    assert conf['bitmain-work-mode'] == '1'   # every board off: pyasic says not mining
    head = web.respond(b'HEAD /cgi-bin/summary.cgi HTTP/1.1\r\n\r\n', st, {})
    assert head.endswith(b'\r\n\r\n') and b'Content-Length: ' in head


def test_pools_from_the_stratum_status():
    from agent.api.frontend import pools_from_status
    st = {'active': 1, 'gen': 3, 'all_down': False, 'pools': [
        {'index': 0, 'url': 'stratum+tcp://a.example:3333', 'user': 'w.1', 'state': 'down',
         'connected': False, 'difficulty': 0, 'accepted': 5, 'rejected': 1, 'stale': 0,
         'failures': 4, 'last_share_age_s': None},
        {'index': 1, 'url': 'stratum+tcp://b.example:3333', 'user': 'w.1', 'state': 'active',
         'connected': True, 'difficulty': 1024, 'accepted': 70, 'rejected': 2, 'stale': 1,
         'failures': 0, 'last_share_age_s': 3.0}]}
    pools = pools_from_status(st)
    r = reply_json('{"command":"pools"}', state=make_state(pools=pools))
    assert r['STATUS'][0]['Msg'] == '2 Pool(s)'
    p0, p1 = r['POOLS']
    assert (p0['Status'], p0['Stratum Active'], p0['Get Failures']) == ('Dead', False, 4)
    assert (p1['Status'], p1['Stratum Active'], p1['Accepted'], p1['Rejected']) == ('Alive', True, 70, 2)
    assert p1['URL'] == 'stratum+tcp://b.example:3333' and p1['Stratum URL'] == 'b.example'
    assert reply_json('{"command":"summary"}', state=make_state(pools=pools))['SUMMARY'][0]['Accepted'] == 75
    assert pools_from_status(None) == []


def test_switch_pool_command_through_the_registry():
    from agent import commands
    from agent.stratum.client import PoolManager
    from agent.work.wiring import register_switch_pool
    pm = PoolManager([{'url': 'stratum+tcp://a.example:3333', 'user': 'w', 'password': 'x'},
                      {'url': 'stratum+tcp://b.example:3333', 'user': 'w', 'password': 'x'}])
    reg = commands.Registry()
    register_switch_pool(reg, pm)
    bad = reg.submit('switch_pool', {'pool': 2}, source='api')
    assert not bad['ok'] and '0..1' in bad['error'] and pm.preferred is None
    assert not reg.submit('switch_pool', {'pool': True}, source='api')['ok']
    ok = reg.submit('switch_pool', {'pool': 1}, source='api')
    assert ok['ok'] and ok['result']['url'] == 'stratum+tcp://b.example:3333' and pm.preferred == 1
