"""The work path's configuration and commands, shared by `hashpilot run` (agent/work/wiring.py)
and the MicroPython agent (port/agent.py). Pure (MicroPython-safe).

Worker names per rig: a pool `user` without a dot gets `.<rig>` appended (`acct` on rig `r7`
mines as `acct.r7`); a user with a dot is used as written. Passwords come from `password` or
`password_file` and are never logged or published.
"""

import json

from agent import commands, options
from agent.stratum.pools import PoolError, parse_url


def _check_pool(sec):
    try:
        parse_url(sec['url'])
    except PoolError as e:
        shown = '<hidden>' if '@' in sec['url'] else repr(sec['url'])   # may hold a password
        raise sec.error('url', '%s = %s: %s' % (sec.label('url'), shown, e.args[0]))
    if not sec['user'] or any(c.isspace() for c in sec['user']):
        raise sec.error('user', '%s: the pool account (no spaces); workers get .<rig>'
                        % sec.label('user'))
    if sec['password'] and sec['password_file']:
        raise sec.error('password_file', '%s: give password or password_file, not both'
                        % sec.label('password_file'))


POOL_SECTION = options.section('pool', [
    options.opt('url', 'str', '', 'stratum+tcp://host:port or stratum+ssl://host:port '
                '(tcp://, tls:// too)'),
    options.opt('user', 'str', '', 'pool account; without a dot the worker is <user>.<rig>'),
    options.opt('password', 'str', '', 'pool password (sent in mining.authorize only; never '
                'logged or published); empty = "x"'),
    options.opt('password_file', 'str', '', 'file holding the password instead'),
    options.opt('tls_ca', 'str', '', 'CA file for a TLS pool; empty = the system CAs'),
], check=_check_pool, array=True,
    doc='Stratum V1 pools in priority order, one [[pool]] table each; none = no work path')

WORK_SECTION = options.section('work', [
    options.opt('refresh_max_s', 'float', 30.0, 'longest time one job stays on the chips',
                1.0, 600.0),
    options.opt('window_s', 'float', 60.0, 'window of the per-chip nonce hashrate and '
                'hardware-error share', 5.0, 3600.0),
    options.opt('hw_alarm_pct', 'float', 5.0, 'chip<i>.hw_errors above this share of wrong '
                'nonces in a window', 0.1, 100.0),
    options.opt('failback_s', 'float', 60.0, 'while on a backup pool, try the better ones '
                'this often', 1.0, 3600.0),
    options.opt('backoff_max_s', 'float', 60.0, 'pool reconnect back-off ceiling', 1.0, 3600.0),
    options.opt('timeout_s', 'float', 10.0, 'connect, subscribe and authorize timeout',
                1.0, 120.0),
    options.opt('suggest_difficulty', 'float', 0.0, 'mining.suggest_difficulty sent to the '
                'pool; 0 = none', 0.0, 1e15),
    options.opt('tuner_source', 'str', 'counters', 'the autotuner\'s hashes and errors: chip '
                'counters (0x8C/0x4C) or verified nonces', choices=('counters', 'nonces')),
])
WORK_DEFAULTS = dict((o['key'], o['default']) for o in WORK_SECTION['options']
                     if o['key'] != 'tuner_source')


def worker_name(user, rig):
    return user if '.' in user else '%s.%s' % (user, rig)


def _password(p):
    if p.get('password_file'):
        with open(p['password_file']) as f:
            return f.read().strip()
    return p.get('password') or 'x'


def pool_list(pools, rig):
    out = []
    for p in pools:
        out.append({'url': p['url'], 'user': worker_name(p['user'], rig),
                    'password': _password(p), 'tls_ca': p.get('tls_ca') or None})
    return out


def ports_check_bits(ports_file):
    """A simulator's reduced nonce difficulty from its ports file (None for real chains)."""
    if not ports_file:
        return None
    try:
        with open(ports_file) as f:
            bits = json.load(f).get('work_check_bits')
    except (OSError, ValueError, AttributeError):
        return None          # the runner has already refused an unreadable ports file
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int)
                             or not 1 <= bits <= 32):
        raise ValueError('ports file work_check_bits = %r: expected 1..32' % (bits,))
    return bits


def validate_switch_pool(body, ctx):
    """switch_pool {pool: 0..n-1}: mine on that pool first (cgminer's switchpool)."""
    err = commands.check_keys(body, ('pool',))
    if err:
        return None, err
    n = ctx.get('pools', 0)
    pool = body.get('pool')
    if not commands.integer(pool) or not 0 <= pool < n:
        return None, 'pool must be an integer 0..%d' % (n - 1)
    return {'pool': pool}, None


def register_switch_pool(registry, pools):
    def switch(args):
        pools.switch_to(args['pool'])
        return {'pool': args['pool'], 'url': pools.pools[args['pool']]['url']}
    registry.register('switch_pool', validate_switch_pool, switch, {'pools': len(pools.pools)})
