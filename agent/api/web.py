"""Read-only Antminer-style web pages (`/cgi-bin/*.cgi`) for tools that want more than the RPC.

pyasic's Antminer S19/S21 backend reads board data, errors, serial number and host name from
these pages, not from the RPC (docs/cgminer-api.md). Served by the RPC's own selector thread
when `[api] web_listen` is set; GET only, same allow list, no writes. Pure functions over the
state snapshot: `respond(request bytes, state, host_info) -> response bytes`.
"""

import json

from agent.api import views

REASONS = {200: 'OK', 400: 'Bad Request', 404: 'Not Found', 405: 'Method Not Allowed',
           408: 'Request Timeout', 413: 'Payload Too Large', 503: 'Service Unavailable'}

# alarm id words -> the status item types of summary.cgi
ALARM_TYPES = (('fan', 'fans'), ('temp', 'temp'), ('hot', 'temp'), ('danger', 'temp'),
               ('thermal', 'temp'), ('mqtt', 'network'), ('link', 'network'),
               ('broker', 'network'), ('pool', 'network'))


def http(code, body, content_type='application/json'):
    data = body if isinstance(body, bytes) else body.encode('utf-8')
    head = ('HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n'
            'Cache-Control: no-store\r\n\r\n' % (code, REASONS.get(code, ''), content_type, len(data)))
    return head.encode('ascii') + data


def http_error(code, text):
    return http(code, json.dumps({'success': False, 'message': text}))


def request_complete(buf):
    return b'\r\n\r\n' in buf or b'\n\n' in buf


def _status(state, msg):
    return {'STATUS': 'S', 'when': int(state['when_s']), 'Msg': msg, 'api_version': '1.0.0'}


def _info(state):
    ident = state['identity']
    return {'miner_version': ident['miner'], 'CompileTime': ident['compile_time'],
            'type': ident['type']}


def stats_page(state, host):
    secs = views.stats_new_api(state)
    out = {'STATUS': _status(state, 'stats')}
    for name, body in secs:
        out[name] = body
    return out


def alarm_items(alarms):
    """Active non-info alarms as summary.cgi status items; an 's' item for each quiet type."""
    items = []
    seen = set()
    for a in alarms:
        if a.get('severity') == 'info':
            continue
        aid = a.get('id', '')
        kind = 'rate'
        for word, t in ALARM_TYPES:
            if word in aid:
                kind = t
                break
        seen.add(kind)
        items.append({'type': kind, 'status': 'e', 'code': 0,
                      'msg': '%s: %s' % (aid, a.get('message', ''))})
    for kind in ('rate', 'network', 'fans', 'temp'):
        if kind not in seen:
            items.append({'type': kind, 'status': 's', 'code': 0, 'msg': ''})
    return items


def summary_page(state, host):
    st = state['status']
    rec = {'elapsed': int(state['elapsed_s']), 'rate_5s': round(st['hashrate_ghs'] or 0.0, 2),
           'rate_30m': round(state['ghs_30m'], 2), 'rate_avg': round(state['ghs_av'], 2),
           'rate_ideal': round(sum(views.board_fields(b, state['model'])['ideal_ghs']
                                   for b in st['boards']), 2),
           'rate_unit': 'GH/s', 'hw_all': 0, 'bestshare': 0,
           'status': alarm_items(state.get('alarms') or [])}
    return {'STATUS': _status(state, 'summary'), 'INFO': _info(state), 'SUMMARY': [rec]}


def system_info_page(state, host):
    ident = state['identity']
    # minertype without ' (hashpilot)': pyasic takes it verbatim as the model (no cut at ' (')
    return {'minertype': ident['model'], 'nettype': 'DHCP', 'netdevice': host.get('netdevice', ''),
            'macaddr': host.get('macaddr', ''), 'hostname': host.get('hostname', ''),
            'ipaddress': host.get('ipaddress', ''), 'netmask': '', 'gateway': '', 'dnsservers': '',
            'system_mode': 'GNU/Linux', 'system_kernel_version': host.get('kernel', ''),
            'system_filesystem_version': ident['miner'], 'firmware_type': 'hashpilot',
            'serinum': ident['miner_id']}


def miner_conf_page(state, host):
    boards = state['status']['boards']
    mining = any(b['enabled'] for b in boards) if boards else False
    pools = [{'url': p.get('url', ''), 'user': p.get('user', ''), 'pass': ''}
             for p in (state.get('pools') or [])]
    # bitmain-work-mode 1 = sleep (pyasic `_is_mining`): every board off
    return {'pools': pools, 'api-listen': True, 'api-network': True,
            'bitmain-fan-ctrl': False, 'bitmain-fan-pwm': '100',
            'bitmain-work-mode': '0' if mining else '1', 'bitmain-freq-level': '100'}


def blink_page(state, host):
    return {'blink': any(a.get('id') == 'rig.identify' for a in (state.get('alarms') or []))}


PAGES = {
    '/cgi-bin/stats.cgi': stats_page,
    '/cgi-bin/summary.cgi': summary_page,
    '/cgi-bin/get_system_info.cgi': system_info_page,
    '/cgi-bin/get_miner_conf.cgi': miner_conf_page,
    '/cgi-bin/get_blink_status.cgi': blink_page,
}


def respond(data, state, host):
    line = bytes(data).split(b'\n', 1)[0].strip()
    parts = line.split(b' ')
    if len(parts) != 3 or not parts[2].startswith(b'HTTP/'):
        return http_error(400, 'bad request line')
    method, target = parts[0], parts[1].decode('latin-1').split('?', 1)[0]
    page = PAGES.get(target)
    if page is None:
        return http_error(404, 'no such page: %s' % target[:80])
    if method not in (b'GET', b'HEAD'):
        return http_error(405, 'read only: GET %s' % target)
    body = json.dumps(page(state, host), separators=(',', ':'))
    out = http(200, body)
    if method == b'HEAD':
        out = out[:out.index(b'\r\n\r\n') + 4]
    return out
