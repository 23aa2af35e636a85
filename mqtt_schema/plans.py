"""Decode plans for the fleet consumer (CPython only): per field table and wire-key shape, one
generated function that renames a whole map and unscales its numbers in a single dict display.

A rig sends the same keys in the same order message after message, so `consumer.decode` looks at
the key tuple once per map and then runs straight-line code: `x0, x1, ... = w.values()` and
`{'power_w': x0, 'j_per_th': S2[x1], ...}`, where `S2` is the per-decimals int -> float cache.
Generating the source (as `collections.namedtuple` does) is what lets CPython build the output at C
speed; the source holds only identifiers made here and `repr()` of string keys, never wire values.

A plan either proves the whole map or raises Unproven, and the caller decodes the message the
previous way (cbor2 or json, then the exact per-element rule). Proven means: every key tuple has a
plan (made the second time a tuple is seen, so a peer sending a new shape each time costs no
compiling; string keys, at most MAX_EXTRA_KEYS unknown keys), and every
value a plan passes on unchanged, or reads through the int -> float cache, is hashable, i.e. no
list or map hides where a number, a string or a list of numbers belongs. So a proven result holds
no container deeper than the schema's own (cbor2 refuses nesting past 400; cbrrr does not).

For what cbrrr parsed (every map's keys in canonical CBOR order, so a map's key set fixes its
key order), `consumer.decode` uses whole-message plans (_Inline, `_Table.canon_entry`): one
function per top-level shape with the sample's nested maps read in place by key, made from the
same pieces and with the same proof, falling back to the per-map plan above (FB).
"""

MAX_SHAPES = 256     # plans kept per table; when full they are dropped and made again as needed
MAX_SEEN = 4096      # key tuples seen once, per table (a plan is made on the second sighting)
MAX_EXTRA_KEYS = 8   # keys beyond the table's own that a shape may carry (a newer agent's fields)


class Unproven(Exception):
    """A plan cannot vouch for this map: decode it the previous way."""


def _scalar(val):
    hash(val)             # TypeError for a list or a map
    return val


def _scalar_pairs(val):
    """list:pair values pass on as they are: only scalars inside."""
    if val.__class__ is list:
        for p in val:
            hash(tuple(p) if p.__class__ is list else p)
    else:
        hash(val)


class _Table:
    """One field table: its compiled shapes and the fallbacks its generated code calls."""

    def __init__(self, plans, defs):
        self.plans = plans
        self.defs = defs
        self.fields = dict((f[0], f) for f in defs)
        self.shapes = {}            # key tuple -> plan function (or _refuse)
        self.seen = {}              # key tuple -> sightings, before its plan is made
        self.entry = self.dispatch  # then the first compiled shape, which checks and falls back
        self.compiled_any = False
        self.canon = {}             # key tuple -> whole-message plan for canonical maps (_Inline)
        self.canon_entry = self.canon_dispatch

    def canon_dispatch(self, w):
        """dispatch() for a map whose maps all hold their keys in canonical CBOR order (what the
        strict parser returns): the same answers, through whole-message plans."""
        if w.__class__ is not dict:
            return _scalar(w)
        shape = tuple(w)
        fn = self.canon.get(shape)
        if fn is None:
            flat = self.shapes.get(shape)
            if flat is None:
                return self.dispatch(w)     # counts sightings, makes the flat plan on the second
            if len(self.canon) >= MAX_SHAPES:
                self.canon.clear()
            fn = flat
            if flat is not _refuse:
                fn = _Inline(self.plans).generate(self, shape, w, flat) or flat
            if self.canon_entry == self.canon_dispatch:
                self.canon_entry = fn
            self.canon[shape] = fn
        return fn(w)

    def dispatch(self, w):
        """Any value where a map of this table belongs -> decoded (scalars come back as they are)."""
        if w.__class__ is not dict:
            return _scalar(w)       # a list (or a dict subclass): not vouched for
        shape = tuple(w)
        fn = self.shapes.get(shape)
        if fn is None:
            n = self.seen.get(shape, 0) + 1
            if n < 2:
                if len(self.seen) >= MAX_SEEN:
                    self.seen.clear()
                self.seen[shape] = n
                raise Unproven('first sighting')
            del self.seen[shape]
            fn = self.plan_for(shape, w)
        return fn(w)

    def plan_for(self, shape, sample):
        """The plan for a key tuple (made now if new; `_refuse` when no plan can be made)."""
        fn = self.shapes.get(shape)
        if fn is not None:
            return fn
        if len(self.shapes) >= MAX_SHAPES:
            self.shapes.clear()
        fn = _refuse
        if all(k.__class__ is str for k in shape) and \
                sum(1 for k in shape if k not in self.fields) <= MAX_EXTRA_KEYS:
            fn = _generate(self, shape, sample)
            if not self.compiled_any:
                self.entry = fn
                self.compiled_any = True
        self.shapes[shape] = fn
        return fn


def _refuse(w):
    raise Unproven('no plan for this shape')


def _sample_map(val):
    """The first dict in a sample value (a map, or a list of maps), to compile nested shapes from."""
    if isinstance(val, list):
        val = next((x for x in val if x.__class__ is dict), None)
    return val if val.__class__ is dict else None


def _nested(table, val):
    """Function for a nested map: the plan for the sample's shape, else the dispatcher."""
    sample = _sample_map(val)
    if sample is not None:
        fn = table.plan_for(tuple(sample), sample)
        if fn is not _refuse:
            return fn
    return table.dispatch


def _expr(table, f, x, val, env, checks):
    """Python expression decoding wire value `x` of field f; env gets the objects it names, checks
    the expressions that must hash (values passed on unchanged)."""
    plans = table.plans
    ftype, dec = f[2], f[4]
    tag = x.upper()
    if ftype == 'num' and dec:
        env['S%d' % dec] = plans.scaled(dec)
        return 'S%d[%s]' % (dec, x)
    if ftype == 'list:num' and dec:
        env['G%d' % dec] = plans.scaled(dec).__getitem__
        return '([*map(G%d, %s)] if %s.__class__ is list else SC(%s))' % (dec, x, x, x)
    if ftype == 'list:pair':
        env['LP'] = plans.list_pair
        checks.append('SP(%s)' % x)
        return 'LP(%s)' % x
    if ftype.startswith('map:'):
        env['M' + tag] = _nested(plans.table(plans.tables[ftype[4:]]), val)
        return 'M%s(%s)' % (tag, x)
    if ftype.startswith('list:map:'):
        env['M' + tag] = _nested(plans.table(plans.tables[ftype[9:]]), val)
        return '([*map(M%s, %s)] if %s.__class__ is list else SC(%s))' % (tag, x, x, x)
    if ftype.startswith('list:'):
        checks.append('*(%s if %s.__class__ is list else (%s,))' % (x, x, x))
    else:
        checks.append(x)
    return x


def _generate(table, shape, sample):
    env = {'K': shape, 'D': table.dispatch, 'SC': _scalar, 'SP': _scalar_pairs}
    names, items, checks = [], [], []
    for i, key in enumerate(shape):
        x = 'x%d' % i
        names.append(x)
        f = table.fields.get(key)
        if f is None:
            checks.append(x)
            items.append('%r: %s' % (key, x))      # unknown keys keep their name
        else:
            items.append('%r: %s' % (f[1], _expr(table, f, x, sample.get(key), env, checks)))
    src = ('def plan(w):\n'
           '    if w.__class__ is not dict or tuple(w) != K:\n'
           '        return D(w)\n'
           '    %s = w.values()\n'
           '    %s\n'
           '    return {%s}\n') % (''.join(n + ', ' for n in names) or '()',
                                   'hash((%s,))' % ', '.join(checks) if checks else 'pass',
                                   ', '.join(items))
    exec(compile(src, '<decode plan>', 'exec'), env)
    return env['plan']


INLINE_ITEMS = 16     # at most this many maps of one list:map field unpacked in place
INLINE_NUMS = 4       # list:num fields as long as this (in the sample) are read item by item


def _canonical(shape):
    """True when the key tuple is in canonical CBOR order (length first, then bytewise)."""
    b = [k.encode() for k in shape]
    return all((len(x), x) < (len(y), y) for x, y in zip(b, b[1:]))


class _Inline:
    """One straight-line function for a whole message shape, for maps in canonical key order.

    In such a map, a key set fixes the key order, so `len(m) == n` and n subscripts prove the
    shape (a KeyError if not) without building and comparing key tuples: twice as fast. The
    top map's keys are read first (KeyError: D, the dispatcher, finds the right plan); the
    sample's nested maps (a map field, a list:map field's maps and the list's length) are read
    in place (any difference: FB, the flat plan of the top shape, decodes the message); one hash
    check covers every value passed on unchanged.
    """

    def __init__(self, plans):
        self.plans = plans
        self.env = {'SC': _scalar, 'SP': _scalar_pairs}
        self.tops = []      # top map: 'x = w[key]'
        self.stmts = []     # nested: checks and element unpacking, in order
        self.checks = []    # expressions that must hash
        self.strs = []      # the same, for string fields (most often a str)
        self.count = 0
        self.inlined = False

    def name(self, prefix):
        self.count += 1
        return '%s%d' % (prefix, self.count)

    def generate(self, table, shape, sample, flat):
        if not _canonical(shape):
            return None
        self.env.update({'D': table.canon_dispatch, 'FB': flat})
        items = []
        for key in shape:
            x = self.name('x')
            self.tops.append('%s = w[%r]' % (x, key))
            items.append(self.item(table, key, sample.get(key), x, 1))
        if not self.inlined:
            return None
        src = ('def plan(w):\n'
               '    if w.__class__ is not dict or len(w) != %d:\n'
               '        return D(w)\n'
               '    try:\n'
               '        %s\n'
               '    except KeyError:\n'
               '        return D(w)\n'
               '    try:\n'
               '        %s\n'
               '        out = {%s}\n'
               '    except KeyError:\n'
               '        return FB(w)\n'
               '    %s\n'
               '    return out\n') % (len(shape), '\n        '.join(self.tops),
                                      '\n        '.join(self.stmts or ['pass']), ', '.join(items),
                                      self.check_src())
        code = compile(src, '<decode plan>', 'exec')
        exec(code, self.env)
        # the same code again, reading the caches as plain dicts (a subclass's [] goes through a
        # Python-level slot: ~10x the instructions): a value not cached yet is a KeyError there,
        # and this first plan hands the message to the one above, which fills the cache
        fast = dict(self.env, FB=self.env['plan'])
        for name in self.env:
            if name[:1] in 'SG' and name[1:].isdigit():
                cache = self.plans.scaled(int(name[1:])).exact
                fast[name] = cache if name[0] == 'S' else cache.__getitem__
        exec(code, fast)
        return fast['plan']

    def item(self, table, key, val, x, depth):
        """'name: expression' for wire key `key` whose value is in `x` (a name or a subscript)."""
        f = table.fields.get(key)
        if f is None:
            return '%r: %s' % (key, self.passed(x))
        ftype = f[2]
        if not ftype.startswith(('list:', 'map:')) and not (ftype == 'num' and f[4]):
            return '%r: %s' % (f[1], self.passed(x, self.strs if ftype == 'str' else self.checks))
        expr = self.nested(ftype, x, val, depth)
        if expr is None and ftype == 'list:num' and f[4] and val.__class__ is list \
                and 0 < len(val) <= INLINE_NUMS:       # the sample's length read item by item
            if not x.isidentifier():
                y = self.name('y')
                self.stmts.append('%s = %s' % (y, x))
                x = y
            self.env['S%d' % f[4]] = self.plans.scaled(f[4])
            known = '[%s]' % ', '.join('S%d[%s[%d]]' % (f[4], x, i) for i in range(len(val)))
            expr = '(%s if %s.__class__ is list and len(%s) == %d else %s)' % (
                known, x, x, len(val), _expr(table, f, x, val, self.env, self.checks))
        if expr is None:
            if ftype != 'num' and not x.isidentifier():     # S2[x] reads x once, the rest twice
                y = self.name('y')
                self.stmts.append('%s = %s' % (y, x))
                x = y
            expr = _expr(table, f, x, val, self.env, self.checks)
        return '%r: %s' % (f[1], expr)

    def passed(self, x, checks=None):
        """Expression for a value passed on unchanged, named in `checks` (self.checks)."""
        checks = self.checks if checks is None else checks
        if not x.isidentifier():
            y = self.name('y')
            checks.append(y)
            return '(%s := %s)' % (y, x)
        checks.append(x)
        return x

    def check_src(self):
        """The hash check: string fields by class (a fresh string's hash costs more), the rest
        and any string field holding something else by hash()."""
        src = 'hash((%s,))' % ', '.join(self.checks) if self.checks else 'pass'
        if self.strs:
            src += '\n    if %s:\n        hash((%s,))' % (
                ' or '.join('%s.__class__ is not str' % x for x in self.strs), ', '.join(self.strs))
        return src

    def plannable(self, ftype, val):
        """(nested table, key tuple) when `val` is a canonical map that table plans, else None."""
        if val.__class__ is not dict:
            return None
        sub = self.plans.table(self.plans.tables[ftype.split(':')[-1]])
        shape = tuple(val)
        if not _canonical(shape) or sub.plan_for(shape, val) is _refuse:
            return None
        return sub, shape

    def nested(self, ftype, x, val, depth):
        """Inlined expression for a map or list:map field whose sample is plannable, else None."""
        if depth <= 0 or not ftype.startswith(('map:', 'list:map:')):
            return None
        if ftype.startswith('map:'):
            plan = self.plannable(ftype, val)
            return None if plan is None else self.inline_map(plan, x, val, depth)
        if val.__class__ is not list or not 0 < len(val) <= INLINE_ITEMS:
            return None
        each = [self.plannable(ftype, v) for v in val]
        if None in each:
            return None
        elems = [self.name('e') for _ in val]
        self.stmts.append('if %s.__class__ is not list or len(%s) != %d:\n            return FB(w)'
                          % (x, x, len(val)))
        self.stmts.append('%s, = %s' % (', '.join(elems), x))
        return '[%s]' % ', '.join(self.inline_map(p, e, v, depth) for p, e, v in zip(each, elems, val))

    def inline_map(self, plan, var, sample, depth):
        sub, shape = plan
        # no class check: anything but a map here raises TypeError at len() or at its first
        # subscript (a list, a string), and TypeError means the previous way, like a bad value
        self.stmts.append('if len(%s) != %d:\n            return FB(w)' % (var, len(shape)))
        self.inlined = True
        return '{%s}' % ', '.join(self.item(sub, key, sample[key], '%s[%r]' % (var, key), depth - 1)
                                  for key in shape)


class Plans:
    """All tables' plans. scaled(dec) is the int -> float cache (a dict whose __missing__
    unscales); list_pair the chip-state pair converter; tables: name -> field table."""

    def __init__(self, scaled, list_pair, tables):
        self.scaled = scaled
        self.list_pair = list_pair
        self.tables = tables
        self._tables = {}

    def table(self, defs):
        t = self._tables.get(id(defs))
        if t is None or t.defs is not defs:
            t = self._tables[id(defs)] = _Table(self, defs)
        return t

    def unpack(self, defs, wire):
        """Wire dict (of JSON's types) -> decoded dict, or raises Unproven."""
        try:
            return self.table(defs).entry(wire)
        except TypeError:      # junk where a number or a scalar belongs (unhashable)
            raise Unproven('unhashable value')
