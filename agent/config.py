"""Agent configuration: schema, strict loading (TOML or INI), flags-over-file merge, example.

Unknown sections or keys, wrong types and out-of-range values stop start-up with a message that
names the key and the file line, the way Klipper rejects a typo instead of ignoring it.
"""

import argparse
import configparser
import re
import sys
import tomllib


class ConfigError(ValueError):
    pass


def _opt(kind, default, help_text, lo=None, hi=None, choices=None):
    return {'kind': kind, 'default': default, 'help': help_text, 'lo': lo, 'hi': hi,
            'choices': choices}


# section -> key -> option. Order is the order of `hashpilot config example`.
SCHEMA = {
    'rig': {
        'site': _opt('str', 'lab', 'site name, part of every MQTT topic'),
        'rig': _opt('str', 'rig1', 'rig name, unique within the site'),
        'model': _opt('str', '', 'rig model (S19JPRO, S21, GAMMA); empty = from the ports file',
                      choices=('', 'S19JPRO', 'S21', 'GAMMA')),
        'ports_file': _opt('str', '', 'ports JSON written by `hashpilot sim --ports-file`'),
        'chains': _opt('list', [], 'serial URLs of the chains, one per board (instead of ports_file)'),
        'board': _opt('str', '', 'serial URL of the board controller (board_backend = serial)'),
        'board_backend': _opt('str', 'serial', 'board controller: serial (byte protocol) or sysfs',
                              choices=('serial', 'sysfs')),
        'sysfs_root': _opt('str', '/sys', 'sysfs root for board_backend = sysfs'),
        'sysfs_map': _opt('str', '', 'JSON file mapping hwmon/pwm/gpio files to boards and fans '
                          '(board_backend = sysfs; see hal/board_sysfs.py)'),
        'baud': _opt('int', 0, 'chain UART speed after init; 0 = fastest the chip family supports',
                     choices=(0, 115200, 1041667, 3125000)),
        'address_rule': _opt('str', 'pow2', 'chip address interval rule', choices=('pow2', 'even')),
        'freq_mhz': _opt('float', 0.0, 'start-up chip frequency; 0 = model nominal', 0.0, 1000.0),
        'time_scale': _opt('float', 0.0, 'test option: physics time factor of a simulator; '
                           '0 = from the ports file (1 on hardware)', 0.0, 10000.0),
    },
    'mqtt': {
        'broker': _opt('str', '127.0.0.1:1883', 'broker host:port'),
        'failover': _opt('list', [], 'more brokers (host:port), tried in turn when the current one '
                         'is lost: the other nodes of a broker cluster'),
        'client_id': _opt('str', '', 'MQTT client id; empty = hashpilot-<site>-<rig>'),
        'username': _opt('str', '', 'username (no default credentials)'),
        'password_file': _opt('str', '', 'file holding the password (0600)'),
        'tls_ca': _opt('str', '', 'CA certificate file; set to enable TLS'),
        'tls_cert': _opt('str', '', 'client certificate file'),
        'tls_key': _opt('str', '', 'client key file'),
        'format': _opt('str', 'cbor', 'payload encoding', choices=('cbor', 'json')),
        'keepalive_s': _opt('int', 30, 'MQTT keepalive', 5, 3600),
        'backoff_min_s': _opt('float', 1.0, 'reconnect back-off floor', 0.1, 600.0),
        'backoff_max_s': _opt('float', 60.0, 'reconnect back-off ceiling', 1.0, 3600.0),
    },
    'telemetry': {
        'poll_s': _opt('float', 2.0, 'chip die temperatures and counters poll period', 0.5, 600.0),
        'telemetry_s': _opt('float', 10.0, 'rig/board summary period', 1.0, 3600.0),
        'chips_s': _opt('float', 60.0, 'per-chip snapshot period', 5.0, 3600.0),
    },
    'state': {
        'state_dir': _opt('str', '/var/lib/hashpilot', 'outbox, tune results, health file'),
        'outbox_max_bytes': _opt('int', 4 * 1024 * 1024, 'outbox bound; oldest dropped first',
                                 64 * 1024, 1024 * 1024 * 1024),
        'outbox_flush_s': _opt('float', 5.0, 'outbox batch write period (flash wear)', 0.1, 300.0),
    },
    'safety': {
        'temp_target_c': _opt('float', 0.0, 'fan PID target; 0 = model default', 0.0, 120.0),
        'temp_hot_c': _opt('float', 0.0, 'derate above; 0 = model default', 0.0, 130.0),
        'temp_danger_c': _opt('float', 0.0, 'board off above; 0 = model default', 0.0, 130.0),
        'control_source': _opt('str', 'die', 'fan PID follows the hottest die or board sensor',
                               choices=('die', 'board')),
        'power_limit_w': _opt('float', 0.0, 'input power limit; 0 = model default', 0.0, 20000.0),
        'watchdog_s': _opt('float', 10.0, 'control loop stall -> safe state after', 2.0, 600.0),
    },
    'fan': {
        'mode': _opt('str', 'auto', 'auto (PID) or manual', choices=('auto', 'manual')),
        'manual_duty_pct': _opt('float', 70.0, 'duty in manual mode', 0.0, 100.0),
        'min_pct': _opt('float', 20.0, 'lowest duty in auto mode', 0.0, 100.0),
        'max_pct': _opt('float', 100.0, 'highest duty in auto mode', 0.0, 100.0),
    },
    'hooks': {
        'dir': _opt('str', '', 'event hooks directory; empty = none'),
        'timeout_s': _opt('float', 10.0, 'a hook is killed after', 0.5, 600.0),
    },
    'api': {
        'listen': _opt('str', '', 'cgminer/bmminer-compatible RPC for farm tools, host:port '
                       '(e.g. "0.0.0.0:4028"); empty = off (docs/cgminer-api.md)'),
        'web_listen': _opt('str', '', 'read-only Antminer-style /cgi-bin/*.cgi pages (stats, '
                           'summary, system info) for tools such as pyasic, host:port '
                           '(e.g. "0.0.0.0:80"); empty = off'),
        'allow': _opt('list', ['0/0'], 'cgminer api-allow list: "NET[/PREFIX]" may read, '
                      '"W:NET[/PREFIX]" may also write; other addresses are ignored'),
        'writes': _opt('bool', False, 'allow the write commands (restart, switchpool, '
                       'powertarget) from W: addresses'),
        'max_connections': _opt('int', 32, 'open RPC connections; more get a busy status', 1, 4096),
        'max_request_bytes': _opt('int', 4096, 'longest request', 64, 65536),
        'timeout_s': _opt('float', 2.0, 'a client must send its request and take the reply '
                          'within', 0.1, 60.0),
    },
    'tuner': {
        'profile': _opt('str', '', 'autotune profile to run at start; empty = none'),
        'results_dir': _opt('str', '', 'tune results; empty = <state_dir>/tune'),
    },
}


def defaults():
    return {sec: {k: (list(o['default']) if isinstance(o['default'], list) else o['default'])
                  for k, o in opts.items()} for sec, opts in SCHEMA.items()}


def _line_index(text):
    """Map (section, key) -> line number by scanning the text (tomllib gives no positions)."""
    index = {}
    section = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = re.match(r'^\[\s*([^\]]+?)\s*\]', line)
        if m:
            section = m.group(1).strip().strip('"')
            index.setdefault((section, None), n)
            continue
        m = re.match(r'^([A-Za-z0-9_.\-"]+)\s*[=:]', line)
        if m and section is not None:
            index.setdefault((section, m.group(1).strip('"')), n)
    return index


def _coerce(kind, value, from_ini):
    """Convert value to kind; raise ValueError with a short reason."""
    if kind == 'str':
        if isinstance(value, str):
            return value
        raise ValueError('expected a string')
    if kind == 'bool':
        if isinstance(value, bool):
            return value
        if from_ini and isinstance(value, str) and value.lower() in ('true', 'false', 'yes', 'no', '1', '0', 'on', 'off'):
            return value.lower() in ('true', 'yes', '1', 'on')
        raise ValueError('expected true or false')
    if kind == 'int':
        if isinstance(value, bool):
            raise ValueError('expected an integer')
        if isinstance(value, int):
            return value
        if from_ini and isinstance(value, str):
            try:
                return int(value.strip(), 0)
            except ValueError:
                pass
        raise ValueError('expected an integer')
    if kind == 'float':
        if isinstance(value, bool):
            raise ValueError('expected a number')
        if isinstance(value, (int, float)):
            return float(value)
        if from_ini and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ValueError('expected a number')
    if kind == 'list':
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        if from_ini and isinstance(value, str):
            return [v.strip() for v in value.split(',') if v.strip()]
        raise ValueError('expected a list of strings')
    raise ValueError('unknown kind %s' % kind)


def _check(section, key, value, raw, from_ini, where):
    opts = SCHEMA.get(section)
    if opts is None:
        raise ConfigError('%s: unknown section [%s] (known: %s)'
                          % (where(section, None), section, ', '.join(SCHEMA)))
    opt = opts.get(key)
    if opt is None:
        raise ConfigError('%s: unknown key %s.%s (known in [%s]: %s)'
                          % (where(section, key), section, key, section, ', '.join(opts)))
    try:
        v = _coerce(opt['kind'], raw, from_ini)
    except ValueError as e:
        raise ConfigError('%s: %s.%s = %r: %s' % (where(section, key), section, key, raw, e))
    if opt['choices'] is not None and v not in opt['choices']:
        raise ConfigError('%s: %s.%s = %r: must be one of %s'
                          % (where(section, key), section, key, raw,
                             ', '.join(repr(c) for c in opt['choices'])))
    if opt['lo'] is not None and v < opt['lo'] or opt['hi'] is not None and v > opt['hi']:
        raise ConfigError('%s: %s.%s = %r: out of range %s..%s'
                          % (where(section, key), section, key, raw, opt['lo'], opt['hi']))
    return v


def _validate_whole(cfg, where):
    """Cross-key checks."""
    m = cfg['mqtt']
    if m['backoff_min_s'] > m['backoff_max_s']:
        raise ConfigError('%s: mqtt.backoff_min_s must not exceed mqtt.backoff_max_s'
                          % where('mqtt', 'backoff_min_s'))
    if bool(m['tls_cert']) != bool(m['tls_key']):
        raise ConfigError('%s: mqtt.tls_cert and mqtt.tls_key go together' % where('mqtt', 'tls_cert'))
    if m['password_file'] and not m['username']:
        raise ConfigError('%s: mqtt.password_file needs mqtt.username' % where('mqtt', 'password_file'))
    f = cfg['fan']
    if f['min_pct'] > f['max_pct']:
        raise ConfigError('%s: fan.min_pct must not exceed fan.max_pct' % where('fan', 'min_pct'))
    if f['max_pct'] < 50:
        raise ConfigError('%s: fan.max_pct = %s: the fan PID must be able to reach at least 50 %%'
                          % (where('fan', 'max_pct'), f['max_pct']))
    if f['mode'] == 'manual' and f['manual_duty_pct'] < f['min_pct']:
        raise ConfigError('%s: fan.manual_duty_pct must not be below fan.min_pct'
                          % where('fan', 'manual_duty_pct'))
    s = cfg['safety']
    hot, danger = s['temp_hot_c'], s['temp_danger_c']
    if hot and danger and hot >= danger:
        raise ConfigError('%s: safety.temp_hot_c must be below safety.temp_danger_c'
                          % where('safety', 'temp_hot_c'))
    if cfg['rig']['board_backend'] == 'sysfs' and not cfg['rig']['sysfs_map']:
        raise ConfigError('%s: rig.board_backend = "sysfs" needs rig.sysfs_map' % where('rig', 'board_backend'))
    for key in ('site', 'rig'):
        v = cfg['rig'][key]
        if not v or len(v) > 64 or any(c in v for c in '+#/ '):
            raise ConfigError('%s: rig.%s = %r: 1-64 characters, no + # / or spaces'
                              % (where('rig', key), key, v))
    host, _, port = m['broker'].rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError('%s: mqtt.broker = %r: expected host:port' % (where('mqtt', 'broker'), m['broker']))
    for b in m['failover']:
        host, _, port = str(b).rpartition(':')
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError('%s: mqtt.failover entry %r: expected host:port' % (where('mqtt', 'failover'), b))
    _validate_api(cfg['api'], where)


def _validate_api(a, where):
    from agent.api.server import parse_allow, parse_listen
    for key in ('listen', 'web_listen'):
        if a[key]:
            try:
                parse_listen(a[key])
            except ValueError as e:
                raise ConfigError('%s: api.%s = %r: %s (numeric address)' % (where('api', key), key, a[key], e))
    if a['web_listen'] and not a['listen']:
        raise ConfigError('%s: api.web_listen needs api.listen (the pages are served by the RPC '
                          'server)' % where('api', 'web_listen'))
    try:
        parse_allow(a['allow'])
    except ValueError as e:
        raise ConfigError('%s: api.allow: %s' % (where('api', 'allow'), e))


def load_file(path):
    """Load and validate a TOML (.toml) or INI file; return the full config dict."""
    try:
        with open(path, 'rb') as fh:
            data = fh.read()
    except OSError as e:
        raise ConfigError('%s: cannot read config: %s' % (path, e.strerror or e))
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError:
        raise ConfigError('%s: not UTF-8 text' % path)
    lines = _line_index(text)

    def where(section, key):
        n = lines.get((section, key)) or lines.get((section, None))
        return '%s:%d' % (path, n) if n else path

    is_ini = not path.endswith('.toml')
    if is_ini:
        parser = configparser.ConfigParser(interpolation=None, strict=True)
        parser.optionxform = str
        try:
            parser.read_string(text, source=path)
        except configparser.Error as e:
            raise ConfigError('%s: %s' % (path, str(e).splitlines()[0]))
        raw = {sec: dict(parser.items(sec)) for sec in parser.sections()}
    else:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError('%s: %s' % (path, e))
    cfg = defaults()
    for section, body in raw.items():
        if not isinstance(body, dict):
            raise ConfigError('%s: top-level key %r: settings belong in a [section]'
                              % (where(section, None), section))
        for key, value in body.items():
            cfg.setdefault(section, {})
            cfg[section][key] = _check(section, key, value, value, is_ini, where)
    _validate_whole(cfg, where)
    return cfg


# Flags that override the file: flag dest -> (section, key).
FLAG_MAP = {
    'ports_file': ('rig', 'ports_file'), 'site': ('rig', 'site'), 'rig': ('rig', 'rig'),
    'state_dir': ('state', 'state_dir'), 'time_scale': ('rig', 'time_scale'),
    'model': ('rig', 'model'), 'format': ('mqtt', 'format'),
}


def add_flags(parser):
    parser.add_argument('--config', help='config file (TOML or INI)')
    parser.add_argument('--ports-file', dest='ports_file', help='ports JSON of `hashpilot sim`')
    parser.add_argument('--broker', help='MQTT broker host:port')
    parser.add_argument('--site')
    parser.add_argument('--rig')
    parser.add_argument('--state-dir', dest='state_dir')
    parser.add_argument('--model')
    parser.add_argument('--format', choices=('cbor', 'json'))
    parser.add_argument('--time-scale', dest='time_scale', type=float,
                        help='test option: physics time factor of the simulator')


def from_args(args):
    """Config from --config (if any) with flags over file, validated."""
    cfg = load_file(args.config) if getattr(args, 'config', None) else defaults()

    def where(section, key):
        return 'command line'

    for dest, (section, key) in FLAG_MAP.items():
        v = getattr(args, dest, None)
        if v is not None:
            cfg[section][key] = _check(section, key, v, v, False, where)
    if getattr(args, 'broker', None):
        cfg['mqtt']['broker'] = _check('mqtt', 'broker', args.broker, args.broker, False, where)
    _validate_whole(cfg, where)
    return cfg


def example():
    """A complete, commented TOML config listing every key with its default."""
    out = ['# hashpilot agent configuration (TOML). Every key is optional; shown with its default.',
           '# Unknown keys stop start-up. Flags (--broker, --site, --rig, --ports-file,',
           '# --state-dir) override the file.', '']
    for section, opts in SCHEMA.items():
        out.append('[%s]' % section)
        for key, o in opts.items():
            note = o['help']
            if o['choices'] is not None:
                note += ' (one of: %s)' % ', '.join(repr(c) for c in o['choices'])
            elif o['lo'] is not None:
                note += ' (%s..%s)' % (o['lo'], o['hi'])
            out.append('# ' + note)
            out.append('%s = %s' % (key, _toml_value(o['default'])))
        out.append('')
    return '\n'.join(out)


def _toml_value(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, str):
        return '"%s"' % v.replace('\\', '\\\\').replace('"', '\\"')
    if isinstance(v, list):
        return '[' + ', '.join(_toml_value(x) for x in v) + ']'
    return repr(v)


def main(argv):
    p = argparse.ArgumentParser(prog='hashpilot config', description='Agent configuration.')
    sub = p.add_subparsers(dest='cmd', required=True)
    sub.add_parser('example', help='print a complete, commented config')
    c = sub.add_parser('check', help='validate a config file')
    c.add_argument('file')
    args = p.parse_args(argv)
    if args.cmd == 'example':
        sys.stdout.write(example() + '\n')
        return 0
    try:
        load_file(args.file)
    except ConfigError as e:
        print('config error: %s' % e, file=sys.stderr)
        return 2
    print('%s: ok' % args.file)
    return 0
