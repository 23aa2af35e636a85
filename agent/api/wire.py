"""cgminer RPC wire format: request parsing, STATUS codes, JSON and plain-text replies.

Pure and MicroPython-friendly (json, dicts, bytes). Facts (codes, messages, layout) are from
cgminer's api.c and API-README; see docs/cgminer-api.md. A reply is built as a list of sections
[(NAME, [record, ...]), ...] whose first section is STATUS; `render` turns it into bytes with the
trailing NUL byte cgminer sends.
"""

import json

# Severity letters of the STATUS section (api.c message()).
SUCCESS, INFO, WARN, ERROR = 'S', 'I', 'W', 'E'

# name -> (Code, severity, Msg). cgminer codes keep cgminer's numbers and texts; 200+ are
# hashpilot's own (cgminer has no status for them), listed in docs/cgminer-api.md.
CODES = {
    'pool': (7, SUCCESS, '%d Pool(s)'),
    'nopool': (8, ERROR, 'No pools'),
    'devs': (9, SUCCESS, '%d ASC(s)'),
    'nodevs': (10, ERROR, 'No ASCs'),
    'summary': (11, SUCCESS, 'Summary'),
    'invcmd': (14, ERROR, 'Invalid command'),
    'version': (22, SUCCESS, 'CGMiner versions'),
    'invjson': (23, ERROR, 'Invalid JSON'),
    'miscmd': (24, ERROR, "Missing JSON 'command'"),
    'mispid': (25, ERROR, 'Missing pool id parameter'),
    'invpid': (26, ERROR, 'Invalid pool id %d - range is 0 - %d'),
    'switchp': (27, SUCCESS, "Switching to pool %d:'%s'"),
    'misval': (28, ERROR, 'Missing comma after GPU number'),
    'invint': (31, ERROR, 'Invalid value for %s'),
    'mineconfig': (33, SUCCESS, 'CGMiner config'),
    'accdeny': (45, ERROR, "Access denied to '%s' command"),
    'devdetails': (69, SUCCESS, 'Device Details'),
    'minestats': (70, SUCCESS, 'CGMiner stats'),
    'mischk': (71, ERROR, 'Missing check cmd'),
    'check': (72, SUCCESS, 'Check command'),
    'minecoin': (78, SUCCESS, 'CGMiner coin'),
    # hashpilot's own
    'toolarge': (200, ERROR, 'Request too large: more than %d bytes'),
    'timeout': (201, ERROR, 'Request incomplete after %.1f s'),
    'busy': (202, ERROR, 'Too many connections (%d): try again'),
    'refused': (203, ERROR, "Command '%s' refused: %s"),
    'applied': (204, SUCCESS, "Command '%s' applied"),
    'nowrite': (205, ERROR, "Write commands are disabled ('%s'): set [api] writes = true"),
    'pending': (206, ERROR, "Command '%s': no answer from the control loop within %.1f s"),
    'fans': (210, SUCCESS, 'Fans'),
    'temps': (211, SUCCESS, 'Temperatures'),
    'power': (212, SUCCESS, 'Power'),
    'invutf': (213, ERROR, 'Request is not UTF-8 text'),
    'accok': (46, SUCCESS, 'Privileged access OK'),
}

JOIN = '+'
SEPARATOR = '|'
MAX_JOINED = 16     # more '+'-joined commands than cgminer has report commands is abuse


def status(key, when_s, description, *args):
    """One STATUS record; `args` fill the Msg template."""
    code, sev, msg = CODES[key]
    if args:
        msg = msg % args
    rec = {'STATUS': sev, 'When': int(when_s), 'Code': code, 'Msg': msg}
    if key != 'invcmd':   # cgminer hides its description from random probes
        rec['Description'] = description
    return rec


def is_error(sections):
    st = sections[0][1] if sections and sections[0][0] == 'STATUS' else None
    if isinstance(st, list):
        st = st[0] if st else None
    return not st or st.get('STATUS') not in (SUCCESS, INFO)


def parse_request(data):
    """Bytes of one request -> dict.

    {'json': bool, 'cmds': [name, ...], 'param': str or None, 'extra': {...}} or, for a request
    that cannot be read, {'json': bool, 'error': code_key}. The JSON form is an object with
    'command' (and optional 'parameter'); other keys (pyasic's 'new_api') are kept in 'extra'.
    The text form is 'command|parameter'. 'cmd1+cmd2' joins report commands (no parameter).
    """
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).rstrip(b'\x00\r\n\t ')
        try:
            text = data.decode('utf-8')
        except UnicodeError:
            return {'json': data[:1] == b'{', 'error': 'invutf'}
    else:
        text = data.strip()
    if text[:1] == '{':
        try:
            obj = json.loads(text)
        except (ValueError, RuntimeError):   # '[[[[...' nested too deep: CPython's
            # RecursionError is a RuntimeError; MicroPython has no RecursionError name at all
            return {'json': True, 'error': 'invjson'}
        if not isinstance(obj, dict):
            return {'json': True, 'error': 'invjson'}
        if 'command' not in obj:
            return {'json': True, 'error': 'miscmd'}
        cmd = obj['command']
        if not isinstance(cmd, str):
            return {'json': True, 'error': 'invcmd'}
        param = obj.get('parameter')
        if isinstance(param, bool) or not isinstance(param, (str, int, float)):
            param = None
        elif not isinstance(param, str):
            param = str(param)
        extra = {}
        for k in obj:
            if k not in ('command', 'parameter'):
                extra[k] = obj[k]
        return _split(cmd, param, True, extra)
    cmd, sep, param = text.partition(SEPARATOR)
    return _split(cmd, param if sep else None, False, {})


def _split(cmd, param, is_json, extra):
    if JOIN in cmd:
        names = cmd.split(JOIN)
        if len(names) > MAX_JOINED:
            return {'json': is_json, 'error': 'invcmd'}
        # joined commands take no parameter (API-README); empty names are skipped like cgminer
        return {'json': is_json, 'cmds': [n for n in names if n], 'param': None,
                'extra': extra, 'joined': True}
    return {'json': is_json, 'cmds': [cmd], 'param': param, 'extra': extra, 'joined': False}


# -- rendering -------------------------------------------------------------------------------

def _json_obj(sections):
    out = {}
    for name, records in sections:
        out[name] = records
    out['id'] = 1
    return out


def _text_escape(v):
    s = v if isinstance(v, str) else _text_value(v)
    # API-README: in text replies '|' ',' '=' and '\' are escaped with a backslash
    for ch in ('\\', '|', ',', '='):
        s = s.replace(ch, '\\' + ch)
    return s


def _text_value(v):
    if v is True:
        return 'true'
    if v is False:
        return 'false'
    if v is None:
        return ''
    if isinstance(v, float):
        return '%.4f' % v
    if isinstance(v, (list, tuple)):
        return ' '.join(_text_value(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v)
    return str(v)


def _text_sections(sections):
    parts = []
    for name, records in sections:
        for rec in (records if isinstance(records, list) else [records]):
            items = []
            if name != 'STATUS' and name not in rec:
                items.append(name)   # e.g. 'SUMMARY,Elapsed=12,...' like cgminer
            for k in rec:
                items.append('%s=%s' % (k, _text_escape(rec[k])))
            parts.append(','.join(items) + SEPARATOR)
    return ''.join(parts)


def render(sections, is_json):
    """One command's reply -> bytes, NUL-terminated."""
    if is_json:
        body = json.dumps(_json_obj(sections), separators=(',', ':'))
    else:
        body = _text_sections(sections)
    return body.encode('utf-8') + b'\x00'


def render_joined(replies, is_json):
    """[(cmd, sections), ...] of a joined request -> bytes: {"cmd":[{reply}],...,"id":1}."""
    if is_json:
        out = {}
        for cmd, sections in replies:
            out[cmd] = [_json_obj(sections)]
        out['id'] = 1
        body = json.dumps(out, separators=(',', ':'))
    else:
        body = ''.join('CMD=%s%s%s' % (_text_escape(cmd), SEPARATOR, _text_sections(sections))
                       for cmd, sections in replies)
    return body.encode('utf-8') + b'\x00'


def render_action(word, is_json):
    """The RESTART / BYE replies: {"STATUS":"RESTART","id":1} or the bare word."""
    if is_json:
        return ('{"STATUS":"%s","id":1}' % word).encode('utf-8') + b'\x00'
    return word.encode('utf-8') + b'\x00'


def error_reply(key, is_json, when_s, description, *args):
    return render([('STATUS', [status(key, when_s, description, *args)])], is_json)
