"""Test helper: run `hashpilot sim` as a separate process and hand out its ports.

    from tests.simproc import start_sim
    with start_sim('S21', time_scale=10, truth=tmp_path / 't.jsonl') as sim:
        chain0 = sim.ports['chains'][0]; board = sim.ports['board']
        ...
        lines = sim.truth_lines()

The process is killed if it does not come up, and on stop() / leaving the with block. It also
gets SIGTERM when the thread that started it dies (PR_SET_PDEATHSIG), so a killed test run leaves
no simulator behind: start it from a thread that outlives its use (normally the main thread).
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _die_with_parent():
    # Linux prctl(PR_SET_PDEATHSIG, SIGTERM): a killed test run leaves no simulator behind.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _drain(stream):
    """What is left in a pipe, without blocking (a grandchild may still hold it open)."""
    try:
        os.set_blocking(stream.fileno(), False)
        data = stream.read()
    except (OSError, ValueError):
        return ''
    return data.decode(errors='replace') if data else ''


class SimProcess:
    def __init__(self, argv, ports_file, truth, tmpdir, start_timeout_s=15.0):
        self.argv = argv
        self.ports_file = ports_file
        self.truth = truth
        self._tmpdir = tmpdir
        self.ports = None
        self.returncode = None
        self.output = ''      # what the simulator printed, kept when it stops (failure reports)
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        try:
            self._wait_ports(start_timeout_s)
        except BaseException:
            self.kill()
            raise

    def _wait_ports(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise RuntimeError('simulator exited with %s: %s' % (
                    self.proc.returncode, (err or out).decode(errors='replace').strip()))
            try:
                with open(self.ports_file) as f:
                    self.ports = json.load(f)
                return
            except (OSError, ValueError):
                time.sleep(0.02)
        raise RuntimeError('simulator did not write %s within %.0f s' % (self.ports_file, timeout_s))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def truth_lines(self):
        """Parsed truth lines written so far (a last partial line is skipped)."""
        if not self.truth or not os.path.exists(self.truth):
            return []
        out = []
        with open(self.truth) as f:
            for line in f:
                if line.endswith('\n'):
                    out.append(json.loads(line))
        return out

    def stop(self, timeout_s=10.0):
        """SIGTERM and wait; kill if it does not exit. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self.returncode = self.proc.wait()
        self._cleanup()
        return self.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._cleanup()

    def _cleanup(self):
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                self.output += _drain(stream)
                stream.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def sim_argv(model='S21', *args, time_scale=1.0, truth=None, faults=(), seed=1, extra=(),
             ports_file=None):
    argv = [sys.executable, '-m', 'agent', 'sim', '--model', model, '--seed', str(seed),
            '--time-scale', str(time_scale)]
    if ports_file:
        argv += ['--ports-file', str(ports_file)]
    if truth:
        argv += ['--truth', str(truth)]
    for f in faults:
        argv += ['--fault', f]
    return argv + [str(a) for a in args] + [str(a) for a in extra]


def start_sim(model='S21', *args, time_scale=1.0, truth=None, faults=(), seed=1, extra=(),
              start_timeout_s=15.0):
    """Launch the simulator, wait for its ports file, return a SimProcess (.ports, .stop())."""
    tmpdir = tempfile.TemporaryDirectory(prefix='hpsim-')
    ports_file = os.path.join(tmpdir.name, 'ports.json')
    argv = sim_argv(model, *args, time_scale=time_scale, truth=truth, faults=faults, seed=seed,
                    extra=extra, ports_file=ports_file)
    return SimProcess(argv, ports_file, str(truth) if truth else None, tmpdir, start_timeout_s)
