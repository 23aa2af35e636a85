"""Agent configuration: schema, strict loading (TOML or INI), flags-over-file merge, example.

Unknown sections or keys, wrong types and out-of-range values stop start-up with a message that
names the key and the file line, the way Klipper rejects a typo instead of ignoring it.
"""

import argparse
import configparser
import re
import sys
import tomllib

from agent import api, commands, fan, options, telemetry
from agent.autotune import session as tune_session
from agent.mqtt_link import OUTBOX_FLUSH_S, OUTBOX_MAX_BYTES
from agent.mqtt_link import SECTION as MQTT_SECTION
from agent.options import ConfigError   # noqa: F401 (the name callers catch)
from agent.safety.config import SECTION as SAFETY_SECTION
from agent.work import wiring as work_wiring
from firmware_hooks.events import SECTION as HOOKS_SECTION

_o = options.opt
MAX_CONFIG_BYTES = 1 << 20     # a config is a few KiB; anything near this is not one


def _check_rig(sec):
    if sec['board_backend'] == 'sysfs' and not sec['sysfs_map']:
        raise sec.error('board_backend', 'rig.board_backend = "sysfs" needs rig.sysfs_map')
    for key in ('site', 'rig'):
        v = sec[key]
        if not v or len(v) > 64 or any(c in v for c in '+#/ '):
            raise sec.error(key, 'rig.%s = %r: 1-64 characters, no + # / or spaces' % (key, v))


RIG_SECTION = options.section('rig', [
    _o('site', 'str', 'lab', 'site name, part of every MQTT topic'),
    _o('rig', 'str', 'rig1', 'rig name, unique within the site'),
    _o('model', 'str', '', 'rig model (S19JPRO, S21, GAMMA); empty = from the ports file',
       choices=('', 'S19JPRO', 'S21', 'GAMMA')),
    _o('ports_file', 'str', '', 'ports JSON written by `hashpilot sim --ports-file`'),
    _o('chains', 'list', [], 'serial URLs of the chains, one per board (instead of ports_file)'),
    _o('board', 'str', '', 'serial URL of the board controller (board_backend = serial)'),
    _o('board_backend', 'str', 'serial', 'board controller: serial (byte protocol) or sysfs',
       choices=('serial', 'sysfs')),
    _o('sysfs_root', 'str', '/sys', 'sysfs root for board_backend = sysfs'),
    _o('sysfs_map', 'str', '', 'JSON file mapping hwmon/pwm/gpio files to boards and fans '
       '(board_backend = sysfs; see hal/board_sysfs.py)'),
    _o('baud', 'int', 0, 'chain UART speed after init; 0 = fastest the chip family supports',
       choices=(0, 115200, 1041667, 3125000)),
    _o('address_rule', 'str', 'pow2', 'chip address interval rule', choices=('pow2', 'even')),
    _o('freq_mhz', 'float', 0.0, 'start-up chip frequency; 0 = model nominal', 0.0, 1000.0),
    _o('time_scale', 'float', 0.0, 'test option: physics time factor of a simulator; '
       '0 = from the ports file (1 on hardware)', 0.0, 10000.0),
], check=_check_rig)

STATE_SECTION = options.section('state', [
    _o('state_dir', 'str', '/var/lib/hashpilot', 'outbox, tune results, health file'),
    OUTBOX_MAX_BYTES, OUTBOX_FLUSH_S,
])

# Every config section, in `hashpilot config example` order. A feature declares its section in
# its own module (agent.options.section) and adds ONE entry here.
SECTIONS = [
    RIG_SECTION,
    MQTT_SECTION,
    telemetry.SECTION,
    STATE_SECTION,
    SAFETY_SECTION,
    fan.SECTION,
    HOOKS_SECTION,
    api.SECTION,
    tune_session.SECTION,
    work_wiring.POOL_SECTION,
    work_wiring.WORK_SECTION,
    commands.SECTION,
]
BY_NAME = dict((spec['name'], spec) for spec in SECTIONS)


def defaults():
    """The whole config with every default: {section: Section, array section: []}."""
    return dict((spec['name'], options.defaults(spec)) for spec in SECTIONS)


def _where_in(path, lines):
    def where(section, key, idx=None):
        n = lines.get((section, idx, key)) or lines.get((section, idx, None))
        return '%s:%d' % (path, n) if n else path
    return where


def _read_ini(path, text):
    """INI -> {section: {key: str}}; `[name ENTRY]` sections form the array section `name`."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    try:
        parser.read_string(text, source=path)
    except configparser.Error as e:
        raise ConfigError('%s: %s' % (path, str(e).splitlines()[0]))
    raw = {}
    for sec in parser.sections():
        name = sec.split()[0] if sec.split() else sec
        spec = BY_NAME.get(name)
        if spec is not None and spec['array']:
            raw.setdefault(name, []).append(dict(parser.items(sec)))
        else:
            raw[sec] = dict(parser.items(sec))
    return raw


def _ini_lines(text):
    """Line index for INI: `[pool a]` entries count as array tables."""
    index = {}
    section, idx, counts = None, None, {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = re.match(r'^\[\s*([^\]]+?)\s*\]', line)
        if m:
            section = m.group(1).split()[0] if m.group(1).split() else m.group(1)
            spec = BY_NAME.get(section)
            if spec is not None and spec['array']:
                idx = counts.get(section, 0)
                counts[section] = idx + 1
            else:
                section, idx = m.group(1), None
            index.setdefault((section, idx, None), n)
            continue
        m = re.match(r'^([A-Za-z0-9_.\-]+)\s*[=:]', line)
        if m and section is not None:
            index.setdefault((section, idx, m.group(1)), n)
    return index


def build(raw, from_text=False, where=None):
    """Validated config from {section: {key: value}} (array sections: a list of tables)."""
    where = where or (lambda section, key, idx=None: 'config')
    cfg = defaults()
    for name, body in raw.items():
        spec = BY_NAME.get(name)
        if spec is None:
            if not isinstance(body, (dict, list)):
                raise ConfigError('%s: top-level key %r: settings belong in a [section]'
                                  % (where(name, None), name))
            raise ConfigError('%s: unknown section [%s] (known: %s)'
                              % (where(name, None), name, ', '.join(BY_NAME)))
        if spec['array']:
            cfg[name] = options.build_array(spec, body, from_text, where)
        else:
            if not isinstance(body, dict):
                raise ConfigError('%s: [%s] must be a table of settings' % (where(name, None), name))
            cfg[name] = options.build(spec, body, from_text, where)
    return cfg


def _huge_number(text):
    """'LINE: KEY = a N-digit number: too large' for the first absurdly long number, else None
    (tomllib itself gives no position for those)."""
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r'\s*([^=\s]+)\s*=\s*[-+]?([0-9_]{1000,})', line)
        if m:
            return 'line %d: %s = a %d-digit number: too large' % (n, m.group(1), len(m.group(2)))
    return None


def load_file(path):
    """Load and validate a TOML (.toml) or INI file; return the full config dict."""
    try:
        with open(path, 'rb') as fh:
            data = fh.read()
    except OSError as e:
        raise ConfigError('%s: cannot read config: %s' % (path, e.strerror or e))
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError('%s: larger than %d bytes' % (path, MAX_CONFIG_BYTES))
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError:
        raise ConfigError('%s: not UTF-8 text' % path)
    if not path.endswith('.toml'):
        return build(_read_ini(path, text), True, _where_in(path, _ini_lines(text)))
    try:
        raw = tomllib.loads(text)
    except RecursionError:
        raise ConfigError('%s: nested too deeply' % path)
    except ValueError as e:   # TOMLDecodeError, and integers beyond Python's digit limit
        raise ConfigError('%s: %s' % (path, _huge_number(text) or e))
    return build(raw, False, _where_in(path, options.line_index(text)))


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

    def where(section, key, idx=None):
        return 'command line'

    flags = dict(FLAG_MAP, broker=('mqtt', 'broker'))
    touched = set()
    for dest, (section, key) in flags.items():
        v = getattr(args, dest, None)
        if v is not None and not (dest == 'broker' and v == ''):
            sec = options.build(BY_NAME[section], dict(cfg[section]), False, where)
            sec.set(key, v)
            cfg[section] = sec
            touched.add(section)
    for section in touched:
        cfg[section].check()
    return cfg


def example():
    """A complete, commented TOML config listing every key with its default."""
    out = ['# hashpilot agent configuration (TOML). Every key is optional; shown with its default.',
           '# Unknown keys stop start-up. Flags (--broker, --site, --rig, --ports-file,',
           '# --state-dir) override the file.', '']
    for spec in SECTIONS:
        if spec['doc']:
            out.append('# ' + spec['doc'])
        lead = ''
        if spec['array']:
            out.append('# [[%s]] may appear several times (none by default), e.g.:' % spec['name'])
            out.append('# [[%s]]' % spec['name'])
            lead = '# '
        else:
            out.append('[%s]' % spec['name'])
        for o in spec['options']:
            out.append('# ' + _note(o))
            out.append('%s%s = %s' % (lead, o['key'], _toml_value(o['default'])))
        out.append('')
    return '\n'.join(out)


def _note(o):
    note = o['help']
    if o['choices'] is not None:
        note += ' (one of: %s)' % ', '.join(repr(c) for c in o['choices'])
    elif o['lo'] is not None:
        note += ' (%s..%s%s)' % (o['lo'], o['hi'],
                                 '' if o['auto'] is None else ', or %r' % (o['auto'],))
    return note


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
