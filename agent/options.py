"""The one config mechanism: each feature declares its own section; values are typed and bounded here.

A feature module declares its options next to the code that reads them:

    SECTION = options.section('api', [
        options.opt('port', 'int', 4028, 'TCP port', 1, 65535),
        options.opt('listen', 'str', '127.0.0.1', 'address to listen on'),
    ], check=_check)            # optional cross-key check: _check(sec) raises sec.error(key, why)

and adds one line to `agent/config.py`'s SECTIONS. `options.section(..., array=True)` declares an
array of tables (`[[pool]]` in TOML; `[pool NAME]` sections in INI). The loaded section is a
`Section` (a dict with typed getters: `sec.getfloat('x')`), whose `error(key, why)` names the
file and line. Non-finite numbers (nan, inf) are refused by the float and int kinds themselves.

Pure core (MicroPython-safe): plain functions, a dict subclass, no imports.
"""


class ConfigError(ValueError):
    pass


KINDS = ('str', 'int', 'float', 'bool', 'list')
_TRUE = ('true', 'yes', '1', 'on')
_FALSE = ('false', 'no', '0', 'off')


def finite(v):
    """float(v) for a finite real number (not bool), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:    # an int too large for a float (a 400-digit number)
        return None
    if f != f or f - f != 0.0:
        return None
    return f


def opt(key, kind, default, help_text, minval=None, maxval=None, choices=None, auto=None):
    """One option. `auto`: a value accepted outside minval..maxval meaning "decided elsewhere"
    (e.g. 0 = the model's value)."""
    if kind not in KINDS:
        raise ValueError('option %s: unknown kind %r' % (key, kind))
    return {'key': key, 'kind': kind, 'default': default, 'help': help_text, 'lo': minval,
            'hi': maxval, 'choices': choices, 'auto': auto}


def section(name, opts, check=None, array=False, doc=''):
    """A section spec: options in display order, an optional check(sec), array of tables or not."""
    by_key = {}
    for o in opts:
        if o['key'] in by_key:
            raise ValueError('section %s: option %s declared twice' % (name, o['key']))
        by_key[o['key']] = o
    return {'name': name, 'options': list(opts), 'by_key': by_key, 'check': check,
            'array': array, 'doc': doc}


def coerce(kind, value, from_text=False):
    """value as `kind`, or ValueError with a short reason. from_text: INI / command-line strings."""
    if kind == 'str':
        if isinstance(value, str):
            return value
        raise ValueError('expected a string')
    if kind == 'bool':
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError('expected true or false')
    if kind == 'list':
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        if from_text and isinstance(value, str):
            return [v.strip() for v in value.split(',') if v.strip()]
        raise ValueError('expected a list of strings')
    if from_text and isinstance(value, str):
        value = _parse_number(kind, value.strip())
    f = finite(value)
    if kind == 'int':
        if f is None or f != int(f):
            raise ValueError('expected an integer')
        return int(f)
    if kind == 'float':
        if f is None:
            raise ValueError('expected a finite number')
        return f
    raise ValueError('unknown kind %s' % kind)


def _parse_number(kind, text):
    try:
        return int(text, 0) if kind == 'int' else float(text)
    except ValueError:
        return None


def check_value(o, raw, from_text=False):
    """Coerce and bound-check one option's value; ValueError names the rule broken."""
    v = coerce(o['kind'], raw, from_text)
    if o['auto'] is not None and v == o['auto']:
        return v
    if o['choices'] is not None and v not in o['choices']:
        raise ValueError('must be one of %s' % ', '.join(repr(c) for c in o['choices']))
    if (o['lo'] is not None and v < o['lo']) or (o['hi'] is not None and v > o['hi']):
        extra = ' (or %r)' % (o['auto'],) if o['auto'] is not None else ''
        raise ValueError('out of range %s..%s%s' % (o['lo'], o['hi'], extra))
    return v


def defaults(spec):
    """The section's default values (a fresh list for list options)."""
    if spec['array']:
        return []
    return Section(spec, None)


def _plain(name, key, index):
    label = '%s[%d]' % (name, index) if index is not None else name
    return label if key is None else '%s.%s' % (label, key)


class Section(dict):
    """One loaded section: a dict of typed, bounded values with typed getters and error()."""

    def __init__(self, spec, raw=None, from_text=False, where=None, index=None):
        super().__init__()
        self.spec = spec
        self.name = spec['name']
        self.index = index
        self._where = where
        for o in spec['options']:
            d = o['default']
            self[o['key']] = list(d) if isinstance(d, list) else d
        for key in (raw or {}):
            self.set(key, raw[key], from_text)

    def where(self, key=None):
        """'file:line' (or 'command line', or the section name) for messages."""
        if self._where is not None:
            return self._where(self.name, key, self.index)
        return _plain(self.name, None, self.index)

    def label(self, key):
        """'section.key' (or 'section[i].key' in an array of tables)."""
        return _plain(self.name, key, self.index)

    def error(self, key, why):
        """A ConfigError naming the place: `raise sec.error('x', sec.label('x') + ' must ...')`."""
        return ConfigError('%s: %s' % (self.where(key), why))

    def set(self, key, raw, from_text=False):
        """Check and store one value (a file entry or a command-line flag)."""
        o = self.spec['by_key'].get(key)
        if o is None:
            raise self.error(key, 'unknown key %s (known in [%s]: %s)'
                             % (self.label(key), self.name,
                                ', '.join(o2['key'] for o2 in self.spec['options'])))
        try:
            self[key] = check_value(o, raw, from_text)
        except ValueError as e:
            raise self.error(key, '%s = %r: %s' % (self.label(key), raw, e))

    def check(self):
        """Run the feature's cross-key check."""
        if self.spec['check'] is not None:
            self.spec['check'](self)
        return self

    def _typed(self, key, kinds):
        o = self.spec['by_key'].get(key)
        if o is None or o['kind'] not in kinds:
            raise KeyError('%s: no %s option %s' % (self.name, '/'.join(kinds), key))
        return self[key]

    def getstr(self, key):
        return self._typed(key, ('str',))

    def getint(self, key):
        return self._typed(key, ('int',))

    def getfloat(self, key):
        return self._typed(key, ('float', 'int'))

    def getbool(self, key):
        return self._typed(key, ('bool',))

    def getlist(self, key):
        return self._typed(key, ('list',))

    def is_auto(self, key):
        """True when the value is the option's `auto` marker (e.g. 0 = model default)."""
        o = self.spec['by_key'][key]
        return o['auto'] is not None and self[key] == o['auto']


def build(spec, raw=None, from_text=False, where=None, index=None):
    """Validated Section from a raw dict (unknown keys, types, bounds, then the feature's check)."""
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError('%s: expected a table of settings' % _plain(spec['name'], None, index))
    return Section(spec, raw, from_text, where, index).check()


def build_array(spec, raws, from_text=False, where=None):
    """List of Sections for an array-of-tables section."""
    if not isinstance(raws, list):
        raise ConfigError('%s: expected an array of tables ([[%s]])' % (spec['name'], spec['name']))
    return [build(spec, r, from_text, where, i) for i, r in enumerate(raws)]


def _header(line):
    """'[name]' -> (name, False), '[[name]]' -> (name, True), else None."""
    if line.startswith('[['):
        end = line.find(']]')
        return (line[2:end].strip().strip('"'), True) if end > 2 else None
    if line.startswith('['):
        end = line.find(']')
        return (line[1:end].strip().strip('"'), False) if end > 1 else None
    return None


def line_index(text):
    """TOML text -> {(section, index, key): line}; key None = the header's line, index counts
    the [[array]] tables of one name (None for plain tables). For error messages only."""
    index = {}
    section, idx = None, None
    counts = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        head = _header(line)
        if head is not None:
            section, arr = head
            idx = None
            if arr:
                idx = counts.get(section, 0)
                counts[section] = idx + 1
            if (section, idx, None) not in index:
                index[(section, idx, None)] = n
            continue
        eq = line.find('=')
        if eq > 0 and section is not None and not line.startswith('#'):
            key = line[:eq].strip().strip('"')
            if (section, idx, key) not in index:
                index[(section, idx, key)] = n
    return index
