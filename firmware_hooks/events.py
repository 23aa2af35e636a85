"""Event hooks: run the executables of a hooks directory with an event as JSON on stdin.

`HookRunner.fire(event)` never blocks: it queues the event for one background worker thread
(bounded queue; when full the event is dropped and counted). Hooks run without a shell (argv
list), in their own session; one that outlives its timeout is killed with its whole process
tree: its process group, every descendant by parent pid, and every process that carries the
run's HASHPILOT_HOOK_RUN token in its environment (a child that called setsid, or whose parent
exited, is still found). The report says how many were killed and whether any survived.
stdout/stderr are captured and logged, non-zero exits logged.

Hook protocol: argv = [hook, event-name]; stdin = one JSON object with at least
{"event": name, "ts": unix seconds}; env HASHPILOT_EVENT=name. Files run in name order; only
regular executable files; names starting with '.' or ending in '~', '.bak', '.swp', '.orig',
'.tmp', '.sample', '.disabled', '.dpkg-*', '.rpmnew', '.rpmsave' (editor/package leftovers,
examples) are skipped.
"""

import json
import logging
import os
import queue
import signal
import stat
import subprocess
import threading
import time

from agent import options

LOG = logging.getLogger('hashpilot.hooks')
EVENTS = ('alarm_raised', 'alarm_cleared', 'tune_finished', 'shutting_down', 'credentials',
          'upgraded', 'rolled_back', 'test')
SKIP_SUFFIXES = ('~', '.bak', '.swp', '.swo', '.orig', '.tmp', '.rpmnew', '.rpmsave', '.disabled',
                 '.sample')
OUTPUT_LOG_BYTES = 2048


SECTION = options.section('hooks', [
    options.opt('dir', 'str', '', 'event hooks directory; empty = none'),
    options.opt('timeout_s', 'float', 10.0, 'a hook is killed after', 0.5, 600.0),
])


def list_hooks(hooks_dir):
    """Runnable hooks in name order."""
    try:
        names = sorted(os.listdir(hooks_dir))
    except OSError:
        return []
    out = []
    for name in names:
        if name.startswith('.') or name.endswith(SKIP_SUFFIXES) or '.dpkg-' in name:
            continue
        path = os.path.join(hooks_dir, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK):
            out.append(path)
    return out


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _proc_table():
    """{pid: (ppid, environ bytes)} of every process we can see (Linux /proc)."""
    out = {}
    try:
        names = os.listdir('/proc')
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % name, 'rb') as f:
                stat_line = f.read()
            ppid = int(stat_line[stat_line.rindex(b')') + 2:].split()[1])
            try:
                with open('/proc/%s/environ' % name, 'rb') as f:
                    env = f.read()
            except OSError:
                env = b''
            out[int(name)] = (ppid, env)
        except (OSError, ValueError, IndexError):
            continue
    return out


def tree_pids(root_pid, token):
    """Pids of root_pid's descendants plus every process whose environment holds token."""
    table = _proc_table()
    mark = ('HASHPILOT_HOOK_RUN=%s' % token).encode()
    found = set(pid for pid, (_ppid, env) in table.items() if mark in env.split(b'\0'))
    if root_pid in table:
        found.add(root_pid)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _env) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    found.discard(os.getpid())
    return found


def kill_tree(proc, token, rounds=5):
    """SIGKILL the hook's whole tree (rescanned: a process may fork while we kill).
    Returns (processes killed, survivors)."""
    seen = set(p for p in tree_pids(proc.pid, token) if not _zombie(p)) | {proc.pid}
    _kill_group(proc)
    left = set()
    for _ in range(rounds):
        for pid in seen:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)
        left = set(p for p in tree_pids(proc.pid, token) if not _zombie(p))
        if not left:
            break
        seen |= left
    return len(seen), len(left)


def _zombie(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            line = f.read()
        return line[line.rindex(b')') + 2:line.rindex(b')') + 3] in (b'Z', b'X')
    except (OSError, ValueError):
        return True


def run_hook(path, name, payload, timeout_s, env=None):
    """Run one hook; return a result dict (never raises for hook failures)."""
    t0 = time.monotonic()
    henv = dict(os.environ if env is None else env)
    henv['HASHPILOT_EVENT'] = name
    token = '%d-%s' % (os.getpid(), os.urandom(8).hex())
    henv['HASHPILOT_HOOK_RUN'] = token   # marks the hook's whole tree, whatever it detaches
    try:
        proc = subprocess.Popen([path, name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
                                cwd='/', env=henv)
    except OSError as e:
        LOG.warning('hook %s (%s): cannot start: %s', path, name, e)
        return {'hook': path, 'rc': None, 'error': str(e), 'timed_out': False}
    timed_out = False
    killed = survivors = 0
    try:
        out, err = proc.communicate(payload, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        killed, survivors = kill_tree(proc, token)
        try:
            out, err = proc.communicate(timeout=2.0)
        except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipes
            proc.kill()
            out, err = b'', b''
            proc.wait()
    res = {'hook': path, 'rc': proc.returncode, 'timed_out': timed_out, 'killed': killed,
           'survivors': survivors,
           'elapsed_s': round(time.monotonic() - t0, 3),
           'stdout': out[:OUTPUT_LOG_BYTES].decode('utf-8', 'replace'),
           'stderr': err[:OUTPUT_LOG_BYTES].decode('utf-8', 'replace')}
    if timed_out and survivors:
        LOG.error('hook %s (%s): timed out after %.1f s; killed %d processes, %d SURVIVED',
                  path, name, timeout_s, killed, survivors)
    elif timed_out:
        LOG.warning('hook %s (%s): timed out after %.1f s; its whole tree killed (%d processes)',
                    path, name, timeout_s, killed)
    elif proc.returncode != 0:
        LOG.warning('hook %s (%s): exit %s: %s', path, name, proc.returncode, res['stderr'].strip())
    else:
        LOG.info('hook %s (%s): ok in %.3f s', path, name, res['elapsed_s'])
    if res['stdout'].strip():
        LOG.info('hook %s stdout: %s', path, res['stdout'].strip())
    if res['stderr'].strip() and proc.returncode == 0:
        LOG.info('hook %s stderr: %s', path, res['stderr'].strip())
    return res


def encode_event(event):
    """Validate and serialise an event dict; raise ValueError with the reason."""
    if not isinstance(event, dict):
        raise ValueError('event must be a dict, got %s' % type(event).__name__)
    name = event.get('event')
    if not isinstance(name, str) or not name:
        raise ValueError("event needs a non-empty string 'event' key")
    body = dict(event)
    body.setdefault('ts', time.time())
    try:
        return name, json.dumps(body, sort_keys=True, allow_nan=False).encode() + b'\n'
    except (TypeError, ValueError) as e:
        raise ValueError('event %r is not JSON-serialisable: %s' % (name, e))


def run_hooks(hooks_dir, event, timeout_s=10.0):
    """Synchronous: run every hook for one event (used by install; the agent uses HookRunner)."""
    name, payload = encode_event(event)
    return [run_hook(p, name, payload, timeout_s) for p in list_hooks(hooks_dir)]


class HookRunner:
    def __init__(self, hooks_dir='/etc/hashpilot/hooks.d', timeout_s=10.0, queue_max=64):
        self.hooks_dir = hooks_dir
        self.timeout_s = float(timeout_s)
        self._q = queue.Queue(maxsize=queue_max)
        self._thread = None
        self._lock = threading.Lock()
        self._closed = False
        self.fired = 0
        self.dropped = 0
        self.rejected = 0
        self.runs = 0
        self.failures = 0
        self.timeouts = 0
        self.last = None

    def fire(self, event):
        """Queue an event for the hooks; returns True if queued. Never blocks, never raises."""
        try:
            name, payload = encode_event(event)
        except ValueError as e:
            self.rejected += 1
            LOG.warning('hook event rejected: %s', e)
            return False
        if self._closed:
            self.dropped += 1
            return False
        self._ensure_thread()
        try:
            self._q.put_nowait((name, payload))
        except queue.Full:
            self.dropped += 1
            LOG.warning('hook queue full: event %s dropped (%d dropped so far)', name, self.dropped)
            return False
        self.fired += 1
        return True

    def _ensure_thread(self):
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name='hashpilot-hooks',
                                                daemon=True)
                self._thread.start()

    def _work(self):
        while True:
            item = self._q.get()
            if item is None:
                return
            name, payload = item
            for path in list_hooks(self.hooks_dir):
                try:
                    res = run_hook(path, name, payload, self.timeout_s)
                except Exception as e:  # a hook must never kill the worker
                    LOG.exception('hook %s: %s', path, e)
                    res = {'hook': path, 'rc': None, 'timed_out': False, 'error': str(e)}
                self.runs += 1
                self.timeouts += res['timed_out']
                self.failures += res['rc'] != 0
                self.last = {'event': name, 'hook': os.path.basename(path), 'rc': res['rc'],
                             'timed_out': res['timed_out']}

    def close(self, wait_s=None):
        """Stop after the queued events (e.g. after `shutting_down`); wait up to wait_s."""
        self._closed = True
        with self._lock:
            t = self._thread
        if t is None:
            return True
        while True:  # the sentinel must get in even if the queue is full
            try:
                self._q.put(None, timeout=0.1)
                break
            except queue.Full:
                if not t.is_alive():
                    return True
        t.join(wait_s)
        return not t.is_alive()

    def get_status(self):
        return {'hooks_dir': self.hooks_dir, 'hooks': [os.path.basename(p) for p in
                                                       list_hooks(self.hooks_dir)],
                'queued': self._q.qsize(), 'fired': self.fired, 'dropped': self.dropped,
                'rejected': self.rejected, 'runs': self.runs, 'failures': self.failures,
                'timeouts': self.timeouts, 'last': self.last}
