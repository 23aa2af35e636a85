"""One parsed request -> reply bytes (read commands) or a write job for the control thread.

Access follows cgminer's api-allow: a client is 'read' (report commands) or 'write' (also the
commands that change something). Write commands additionally need `[api] writes = true`. A
write job is {'cmd', 'op', 'args', 'json'}: the server hands (op, args) to the agent's command
path and renders the outcome with `write_reply`.
"""

from agent.api import views, wire

# cgminer name -> parser(param, state) -> (op, args, None) or (None, None, (code key, args))
WRITE = {}


def _w_restart(param, state):
    return 'restart', {}, None


def _w_switchpool(param, state):
    pools = state.get('pools') or []
    if not pools:
        return None, None, ('nopool', ())
    if param is None or param == '':
        return None, None, ('mispid', ())
    try:
        n = int(param)
    except ValueError:
        return None, None, ('invpid', (-1, len(pools) - 1))
    if not 0 <= n < len(pools):
        return None, None, ('invpid', (n, len(pools) - 1))
    return 'switch_pool', {'pool': n}, None


def _w_powertarget(param, state):
    try:
        w = float(param)
    except (TypeError, ValueError):
        return None, None, ('invint', ('powertarget (watts)',))
    if w != w or w in (float('inf'), float('-inf')):
        return None, None, ('invint', ('powertarget (watts)',))
    return 'set_power_target', {'w': w}, None


WRITE['restart'] = _w_restart
WRITE['switchpool'] = _w_switchpool
WRITE['powertarget'] = _w_powertarget

OTHER = ('check', 'privileged')


def known(name):
    return name in views.READ or name in WRITE or name in OTHER


def _status_only(key, state, is_json, *args):
    return wire.error_reply(key, is_json, state['when_s'], state['identity']['description'], *args)


def _check(param, state, access):
    when, desc = state['when_s'], state['identity']['description']
    if not param:
        return [('STATUS', [wire.status('mischk', when, desc)])]
    exists = known(param)
    allowed = exists and (param not in WRITE or access == 'write')
    return [('STATUS', [wire.status('check', when, desc)]),
            ('CHECK', [{'Exists': 'Y' if exists else 'N', 'Access': 'Y' if allowed else 'N'}])]


def _sections(name, param, extra, state, access):
    """Sections for a report command (the ones that can be joined) or check/privileged."""
    when, desc = state['when_s'], state['identity']['description']
    if name == 'check':
        return _check(param, state, access)
    if name == 'privileged':
        if access == 'write':
            return [('STATUS', [wire.status('accok', when, desc)])]
        return [('STATUS', [wire.status('accdeny', when, desc, name)])]
    return views.read_reply(name, state, param, extra)


def respond(req, state, access, writes_enabled):
    """('reply', bytes) or ('write', job)."""
    is_json = req['json']
    if 'error' in req:
        return 'reply', _status_only(req['error'], state, is_json)
    if req.get('joined'):
        return 'reply', _joined(req, state, access)
    name = req['cmds'][0]
    if name in views.READ or name in OTHER:
        return 'reply', wire.render(_sections(name, req['param'], req['extra'], state, access),
                                    is_json)
    if name not in WRITE:
        return 'reply', _status_only('invcmd', state, is_json)
    if access != 'write':
        return 'reply', _status_only('accdeny', state, is_json, name)
    if not writes_enabled:
        return 'reply', _status_only('nowrite', state, is_json, name)
    op, args, err = WRITE[name](req['param'], state)
    if err is not None:
        return 'reply', _status_only(err[0], state, is_json, *err[1])
    return 'write', {'cmd': name, 'op': op, 'args': args, 'json': is_json}


def _joined(req, state, access):
    when, desc = state['when_s'], state['identity']['description']
    replies = []
    seen = set()
    for name in req['cmds']:
        if name in seen:   # cgminer answers a repeated command once
            continue
        seen.add(name)
        if name in views.READ:
            replies.append((name, _sections(name, None, req['extra'], state, access)))
        elif known(name):   # write, check, privileged: not joinable
            replies.append((name, [('STATUS', [wire.status('accdeny', when, desc, name)])]))
        else:
            replies.append((name, [('STATUS', [wire.status('invcmd', when, desc)])]))
    return wire.render_joined(replies, req['json'])


def write_reply(job, ok, error, state):
    """Outcome of a write job -> reply bytes."""
    is_json = job['json']
    if not ok:
        return _status_only('refused', state, is_json, job['cmd'], error or 'refused')
    if job['op'] == 'restart':
        return wire.render_action('RESTART', is_json)
    if job['op'] == 'switch_pool':
        n = job['args']['pool']
        pools = state.get('pools') or []
        url = pools[n].get('url', '') if n < len(pools) else ''
        return _status_only('switchp', state, is_json, n, url)
    return _status_only('applied', state, is_json, job['cmd'])
