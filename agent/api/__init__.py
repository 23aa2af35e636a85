"""cgminer/bmminer-compatible RPC (TCP 4028) for farm tools: see docs/cgminer-api.md.

`attach(agent)` is the agent's one entry point: it returns None when `[api] listen` is empty,
otherwise an ApiFrontEnd whose snapshot timer runs on the control thread and whose server runs
on its own thread.
"""

from agent import options


def _check(sec):
    from agent.api.server import parse_allow, parse_listen
    for key in ('listen', 'web_listen'):
        if sec[key]:
            try:
                parse_listen(sec[key])
            except ValueError as e:
                raise sec.error(key, 'api.%s = %r: %s (numeric address)' % (key, sec[key], e))
    if sec['web_listen'] and not sec['listen']:
        raise sec.error('web_listen', 'api.web_listen needs api.listen (the pages are served by '
                        'the RPC server)')
    try:
        parse_allow(sec['allow'])
    except ValueError as e:
        raise sec.error('allow', 'api.allow: %s' % e)


SECTION = options.section('api', [
    options.opt('listen', 'str', '', 'cgminer/bmminer-compatible RPC for farm tools, host:port '
                '(e.g. "0.0.0.0:4028"); empty = off (docs/cgminer-api.md)'),
    options.opt('web_listen', 'str', '', 'read-only Antminer-style /cgi-bin/*.cgi pages (stats, '
                'summary, system info) for tools such as pyasic, host:port (e.g. "0.0.0.0:80"); '
                'empty = off'),
    options.opt('allow', 'list', ['0/0'], 'cgminer api-allow list: "NET[/PREFIX]" may read, '
                '"W:NET[/PREFIX]" may also write; other addresses are ignored'),
    options.opt('writes', 'bool', False, 'allow the write commands (restart, switchpool, '
                'powertarget) from W: addresses'),
    options.opt('max_connections', 'int', 32, 'open RPC connections; more get a busy status',
                1, 4096),
    options.opt('max_request_bytes', 'int', 4096, 'longest request', 64, 65536),
    options.opt('timeout_s', 'float', 2.0, 'a client must send its request and take the reply '
                'within', 0.1, 60.0),
], check=_check)


def attach(agent):
    cfg = agent.cfg.get('api') or {}
    if not cfg.get('listen'):
        return None
    from agent.api.frontend import ApiFrontEnd
    return ApiFrontEnd(agent, cfg)
