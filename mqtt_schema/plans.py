"""Decode plans for the fleet consumer (CPython only): per field table and wire-key shape, one
generated function that renames a whole map and unscales its numbers in a single dict display.

A rig sends the same keys in the same order message after message, so `consumer.decode` looks at
the key tuple once per map and then runs straight-line code: `x0, x1, ... = w.values()` and
`{'power_w': x0, 'j_per_th': S2[x1], ...}`, where `S2` is the per-decimals int -> float cache.
Generating the source (as `collections.namedtuple` does) is what lets CPython build the output at C
speed; the source holds only identifiers made here and `repr()` of string keys, never wire values.

Anything a plan does not cover goes to the generic decoder (`generic(defs, wire)`, the rule the
plans must agree with): a key tuple in another order, a non-string key, a dict subclass, more
than MAX_SHAPES shapes for one table. A TypeError from junk (an unhashable value where a number
belongs) makes `unpack` run the generic decoder on the whole message.
"""

MAX_SHAPES = 32      # per table: more distinct key tuples (junk, a fuzzing peer) go generic
MAX_EXTRA_KEYS = 8   # keys beyond the table's own that a shape may carry (a newer agent's fields)
_MISSING = object()


class _Table:
    """One field table: its compiled shapes and the fallbacks its generated code calls."""

    def __init__(self, plans, defs):
        self.plans = plans
        self.defs = defs
        self.fields = dict((f[0], f) for f in defs)
        self.shapes = {}            # key tuple -> function (None: this shape stays generic)
        self.entry = self.dispatch  # then the first compiled shape, which checks and falls back
        self.compiled_any = False

    def dispatch(self, w):
        """Any value where a map of this table belongs -> decoded (non-dicts come back as they are)."""
        if not isinstance(w, dict):
            return w
        fn = None
        if w.__class__ is dict:
            shape = tuple(w)
            fn = self.shapes.get(shape, _MISSING)
            if fn is _MISSING:
                fn = self._compile(shape, w)
        if fn is None:
            return self.plans.generic(self.defs, w)
        return fn(w)

    def _compile(self, shape, sample):
        if len(self.shapes) >= MAX_SHAPES:
            return None
        fn = None
        if all(k.__class__ is str for k in shape) and \
                sum(1 for k in shape if k not in self.fields) <= MAX_EXTRA_KEYS:
            fn = _generate(self, shape, sample)
        self.shapes[shape] = fn
        if fn is not None and not self.compiled_any:
            self.entry = fn
            self.compiled_any = True
        return fn


def _sample_map(val):
    """The first dict in a sample value (a map, or a list of maps), to compile nested shapes from."""
    if isinstance(val, list):
        val = next((x for x in val if x.__class__ is dict), None)
    return val if val.__class__ is dict else None


def _nested(plans, table, val):
    """Function for a nested map: the compiled one for the sample's shape, else the dispatcher."""
    sample = _sample_map(val)
    if sample is not None:
        shape = tuple(sample)
        fn = table.shapes.get(shape, _MISSING)
        if fn is _MISSING:
            fn = table._compile(shape, sample)
        if fn is not None:
            return fn
    return table.dispatch


def _expr(table, f, x, val, env):
    """Python expression decoding wire value `x` of field f (env gets the objects it names)."""
    plans = table.plans
    ftype, dec = f[2], f[4]
    tag = x.upper()
    if ftype == 'num' and dec:
        env['S%d' % dec] = plans.scaled(dec)
        return 'S%d[%s]' % (dec, x)
    if ftype == 'list:num' and dec:
        env['G%d' % dec] = plans.scaled(dec).__getitem__
        env['LN' + tag] = plans.slow(ftype, dec)
        return '([*map(G%d, %s)] if %s.__class__ is list else LN%s(%s))' % (dec, x, x, tag, x)
    if ftype == 'list:pair':
        env['LP'] = plans.slow(ftype, dec)
        return 'LP(%s)' % x
    if ftype.startswith('map:'):
        sub = plans.table(plans.tables[ftype[4:]])
        env['M' + tag] = _nested(plans, sub, val)
        return 'M%s(%s)' % (tag, x)
    if ftype.startswith('list:map:'):
        sub = plans.table(plans.tables[ftype[9:]])
        env['M' + tag] = _nested(plans, sub, val)
        env['LM' + tag] = plans.slow(ftype, dec)
        return '([*map(M%s, %s)] if %s.__class__ is list else LM%s(%s))' % (tag, x, x, tag, x)
    return x


def _generate(table, shape, sample):
    env = {'K': shape, 'D': table.dispatch}
    names, items = [], []
    for i, key in enumerate(shape):
        x = 'x%d' % i
        names.append(x)
        f = table.fields.get(key)
        if f is None:
            items.append('%r: %s' % (key, x))      # unknown keys keep their name
        else:
            items.append('%r: %s' % (f[1], _expr(table, f, x, sample.get(key), env)))
    src = ('def plan(w):\n'
           '    if w.__class__ is not dict or tuple(w) != K:\n'
           '        return D(w)\n'
           '    %s = w.values()\n'
           '    return {%s}\n') % (''.join(n + ', ' for n in names) or '()', ', '.join(items))
    exec(compile(src, '<decode plan>', 'exec'), env)
    return env['plan']


class Plans:
    """All tables' plans. generic(defs, wire) -> decoded dict is the reference path; scaled(dec)
    the int -> float cache (a dict whose __missing__ unscales); slow(ftype, dec) the generic
    converter of one field type (lists of another class, junk); tables: name -> field table."""

    def __init__(self, generic, scaled, slow, tables):
        self.generic = generic
        self.scaled = scaled
        self.slow = slow
        self.tables = tables
        self._tables = {}

    def table(self, defs):
        t = self._tables.get(id(defs))
        if t is None or t.defs is not defs:
            t = self._tables[id(defs)] = _Table(self, defs)
        return t

    def unpack(self, defs, wire):
        """Wire dict -> decoded dict, exactly as generic(defs, wire) gives it."""
        try:
            return self.table(defs).entry(wire)
        except TypeError:      # junk where a number belongs (unhashable): the generic decoder
            return self.generic(defs, wire)
