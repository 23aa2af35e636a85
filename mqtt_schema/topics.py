"""MQTT topic names: `hashpilot/v1/<site>/<rig>/<kind>`, with site/rig validation. Pure."""

PREFIX = 'hashpilot/v1/'
KINDS = ('status', 'meta', 'telemetry', 'chips', 'alarm', 'cmd/result')
MAX_NAME = 64
MAX_OP = 32


def check_name(what, name):
    """Return None if `name` is a valid site or rig name, else the reason."""
    if not isinstance(name, str) or not name:
        return '%s must be a non-empty string' % what
    if len(name) > MAX_NAME:
        return '%s longer than %d characters' % (what, MAX_NAME)
    for ch in name:
        if ch in '+#/' or ord(ch) < 32 or ch == '\x7f':
            return '%s must not contain %r' % (what, ch)
    return None


def check_op(op):
    """Command operation names: [a-z0-9_]{1,32}; 'result' is the answer topic, not an op."""
    if not isinstance(op, str) or not op or len(op) > MAX_OP:
        return 'op must be 1..%d characters' % MAX_OP
    for ch in op:
        if not ('a' <= ch <= 'z' or '0' <= ch <= '9' or ch == '_'):
            return 'op must match [a-z0-9_]+'
    if op == 'result':
        return "'result' is reserved"
    return None


def root(site, rig):
    """`hashpilot/v1/<site>/<rig>/`; raises ValueError naming the bad part."""
    for what, name in (('site', site), ('rig', rig)):
        reason = check_name(what, name)
        if reason:
            raise ValueError(reason)
    return PREFIX + site + '/' + rig + '/'


def topic(site, rig, kind):
    return root(site, rig) + kind


def cmd_filter(site, rig):
    return root(site, rig) + 'cmd/+'


def split(topic_name):
    """Full topic -> (site, rig, kind) or None; a bare kind ('telemetry') -> (None, None, kind)."""
    if not isinstance(topic_name, str):
        return None
    if not topic_name.startswith(PREFIX):
        return (None, None, topic_name) if topic_name else None
    parts = topic_name[len(PREFIX):].split('/')
    if len(parts) < 3:
        return None
    return (parts[0], parts[1], '/'.join(parts[2:]))
