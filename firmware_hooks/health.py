"""Health-file contract between the agent and `hashpilot firmware upgrade`.

The agent calls `write_health(state_dir, version, healthy=True)` each time it has published
telemetry (and may call it with healthy=False when it cannot). The file is
<state_dir>/health.json (default /var/lib/hashpilot/health.json), replaced atomically:

    {"healthy": true, "version": "0.2.0", "ts": 1763720000.25, "pid": 1234,
     "last_telemetry_ts": 1763720000.25, "detail": "..."}

`healthy` (bool) and `ts` (Unix wall time, float seconds, when the file was written) and
`version` (the agent's __version__) are required. The upgrader accepts the new release when it
reads healthy == true, version == the new release and ts >= the moment it switched `current`.
"""

import json
import os
import time

FILENAME = 'health.json'


def write_health(state_dir, version, healthy=True, **extra):
    """Atomically write the health file; returns its path. Extra keys must be JSON-able."""
    body = dict(extra)
    body.update({'healthy': bool(healthy), 'version': str(version), 'ts': time.time(),
                 'pid': os.getpid()})
    path = os.path.join(state_dir, FILENAME)
    tmp = '%s.%d.tmp' % (path, os.getpid())
    with open(tmp, 'w') as f:
        json.dump(body, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_health(path):
    """The parsed health file, or None when missing or malformed."""
    try:
        with open(path) as f:
            body = json.load(f)
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def check(body, version, since_ts):
    """(ok, reason) for one reading of the health file."""
    if body is None:
        return False, 'no health file'
    ts = body.get('ts')
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        return False, 'health file without numeric ts'
    if ts < since_ts:
        return False, 'health file older than the switch'
    if version is not None and body.get('version') != version:
        return False, 'health file from version %r, want %r' % (body.get('version'), version)
    if body.get('healthy') is not True:
        return False, 'agent reports unhealthy: %s' % body.get('detail', '')
    return True, 'healthy'
