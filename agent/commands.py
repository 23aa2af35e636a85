"""Command registry: each feature registers its commands (op, validator, handler); every front-end
(MQTT cmd/<op>, the cgminer API, a CLI) submits through the same validated path.

    reg = commands.Registry()
    reg.register('set_fan', fan.validate_set_fan, supervisor.set_fan_cmd,
                 ctx=lambda: {'fan_min_pct': 20.0})
    reg.submit('set_fan', {'mode': 'manual', 'duty_pct': 70}, source='api')
        -> {'ok': True, 'op': 'set_fan', 'id': 'api-1', 'source': 'api', 'result': None,
            'error': None}

A validator is `validator(args, ctx) -> (normalised_args, None) | (None, reason)` and checks
everything before anything changes; the handler gets the normalised args and returns a result
(or None), or raises ValueError when a lower layer (limits, safety) still refuses. Handlers run
on the control thread: front-ends on other threads hand their submit over to it.

Pure core (MicroPython-safe): plain dicts and functions.
"""

from agent import options
from agent.options import finite
from mqtt_schema import codec, consumer, topics
from mqtt_schema.cmdauth import CommandGuard, parse_key

MAX_ID_LEN = 64

# Remote (MQTT) commands: freshness window, replay refusal, optional operator keys.
SECTION = options.section('commands', [
    options.opt('window_s', 'float', 60.0, 'remote commands need ts within this many seconds; '
                'an id seen again within it is a replay and refused', 5.0, 3600.0),
    options.opt('key_files', 'list', [], 'operator key files (HMAC-SHA256, 64 hex digits or 16+ '
                'characters); when set, unsigned remote commands are refused'),
], doc='remote command guard (docs/security.md)')


def build_guard(sec, read=None):
    """CommandGuard from the [commands] section; ConfigError naming the key on a bad key file."""
    keys = []
    for path in sec.getlist('key_files'):
        try:
            text = read(path) if read else _read(path)
            keys.append(parse_key(text))
        except (OSError, ValueError) as e:
            raise sec.error('key_files', '%s: %s' % (path, e))
    return CommandGuard(window_s=sec.getfloat('window_s'), keys=keys)


def _read(path):
    with open(path) as f:
        return f.read(4096)


def number(v):
    """True for a finite real number (not bool)."""
    return finite(v) is not None


def integer(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_keys(body, allowed):
    """Reason string naming unknown fields, or None."""
    extra = [k for k in body if k not in allowed]
    if extra:
        return 'unknown field(s): %s' % ', '.join(sorted(str(k) for k in extra))
    return None


def no_args(body, ctx):
    """Validator of a command that takes no arguments."""
    err = check_keys(body, ())
    if err:
        return None, err
    return {}, None


def validate_identify(body, ctx):
    """identify {duration_s?: 1..3600, default 30} (the agent's own command)."""
    err = check_keys(body, ('duration_s',))
    if err:
        return None, err
    dur = body.get('duration_s', 30)
    if not number(dur) or not 1 <= dur <= 3600:
        return None, 'duration_s must be a number 1..3600'
    return {'duration_s': float(dur)}, None


def board_chip(body, ctx):
    """Optional board / chip selectors -> (board, chip, None) or (None, None, reason).

    ctx: 'boards', 'chips_per_board'. A chip needs its board."""
    board = body.get('board')
    chip = body.get('chip')
    boards = ctx.get('boards', 0)
    if board is not None:
        if not integer(board) or not 0 <= board < boards:
            return None, None, 'board must be an integer 0..%d' % (boards - 1)
    if chip is not None:
        if board is None:
            return None, None, 'chip needs board'
        n = ctx.get('chips_per_board', 0)
        if not integer(chip) or not 0 <= chip < n:
            return None, None, 'chip must be an integer 0..%d' % (n - 1)
    return board, chip, None


def expired(ts_ms, now_unix_s, max_age_s):
    """Reason string when a command sent at ts_ms (Unix ms) is too old to apply, else None.

    A command queued in a broker during an outage must not be applied minutes later.
    """
    if ts_ms is None or now_unix_s is None:
        return None
    if finite(ts_ms) is None or abs(ts_ms) > 1 << 53:
        return "'ts' is not a Unix time in ms"
    age_s = now_unix_s - ts_ms / 1000.0
    if age_s > max_age_s:
        return 'command expired: sent %.0f s ago (max age %.0f s)' % (age_s, max_age_s)
    if -age_s > max_age_s:
        return 'command timestamp %.0f s in the future (clock skew > %.0f s)' % (-age_s, max_age_s)
    return None


def _result(op, cid, source, ok, error=None, result=None):
    return {'ok': ok, 'op': op, 'id': cid, 'source': source, 'error': error, 'result': result}


class Registry:
    """op -> (validator, handler, ctx). One per agent; features register at construction."""

    def __init__(self, max_age_s=60.0, guard=None):
        self._ops = {}
        self.max_age_s = max_age_s
        self.guard = guard      # CommandGuard for remote payloads (ts, replay, signatures)
        self._seq = 0

    def register(self, op, validator, handler, ctx=None):
        """Add a command. ctx: dict, zero-argument callable returning one, or None."""
        reason = topics.check_op(op)
        if reason:
            raise ValueError('command %r: %s' % (op, reason))
        if op in self._ops:
            raise ValueError('command %r registered twice' % (op,))
        self._ops[op] = (validator, handler, ctx)

    def ops(self):
        return sorted(self._ops)

    def validate(self, op, cid, args):
        """(cmd, None) with cmd = {'op', 'id', 'args'} normalised, or (None, reason)."""
        entry = self._ops.get(op)
        if entry is None:
            return None, 'unknown command %r (known: %s)' % (op, ', '.join(self.ops()))
        if not isinstance(cid, str) or not 0 < len(cid) <= MAX_ID_LEN:
            return None, 'id must be a string of 1..%d characters' % MAX_ID_LEN
        if not isinstance(args, dict):
            return None, 'args must be a map'
        validator, _, ctx = entry
        if callable(ctx):
            ctx = ctx()
        try:
            out, err = validator(args, ctx or {})
        except Exception as e:   # a validator bug must not crash the caller's thread
            return None, 'malformed command: %s' % (e,)
        if err:
            return None, err
        return {'op': op, 'id': cid, 'args': out}, None

    def submit(self, op, args, cid=None, source='local', ts_ms=None, now_unix_s=None):
        """Validate then apply on the caller's (control) thread -> result dict, never raises
        for bad input: {'ok', 'op', 'id', 'source', 'error', 'result'}."""
        if cid is None:
            self._seq += 1
            cid = '%s-%d' % (source, self._seq)
        err = expired(ts_ms, now_unix_s, self.max_age_s)
        if err is not None:
            return _result(op, cid, source, False, err)
        cmd, err = self.validate(op, cid, args)
        if err is not None:
            return _result(op, cid, source, False, err)
        try:
            result = self._ops[op][1](cmd['args'])
        except ValueError as e:   # refused by a lower layer (limits, safety): nothing changed
            return _result(op, cid, source, False, str(e))
        return _result(op, cid, source, True, result=result)

    def submit_payload(self, op, data, source='mqtt', now_unix_s=None):
        """A cmd/<op> payload (CBOR or JSON bytes) -> result dict. A refused payload keeps the
        id it carried, whatever its encoding, so the sender can match the answer."""
        cmd, err = consumer.parse_command(op, data)
        if cmd is None:
            return _result(op, command_id(data), source, False, err)
        ts_ms = cmd.get('ts_ms')
        if self.guard is not None and now_unix_s is not None:
            if op not in self._ops:   # unknown ops are refused below; they need no replay slot
                return self.submit(op, cmd['args'], cmd['id'], source, None, now_unix_s)
            err = self.guard.check(op, cmd['id'], ts_ms, cmd['args'], cmd.get('sig'),
                                   int(now_unix_s * 1000))
            if err is not None:
                return _result(op, cmd['id'], source, False, err)
            ts_ms = None   # freshness judged by the guard
        return self.submit(op, cmd['args'], cmd['id'], source, ts_ms, now_unix_s)


def command_id(data):
    """The 'id' of a command payload when it has a usable one, else '' (never raises)."""
    try:
        payload = codec.loads(data)
        cid = payload.get('id') if isinstance(payload, dict) else None
    except Exception:
        return ''
    if isinstance(cid, str) and 0 < len(cid) <= MAX_ID_LEN:
        return cid
    return ''
