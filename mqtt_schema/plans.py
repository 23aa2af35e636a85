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
        checks.append('(tuple(%s) if %s.__class__ is list else %s)' % (x, x, x))
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
