"""Test helper: the MicroPython agent (Unix port with the agent frozen in) as a process.

    bin_path = mpyagent.frozen_binary()          # refreshes build-hashpilot (seconds if unchanged)
    with MpyAgentProcess(tmp_path, sim.ports_file, broker, rig='bx') as agent:
        ...
Runs from tmp_path (not the repo: '' heads sys.path, and the repo's .py sources there would be
compiled into the heap instead of the frozen bytecode being used). Stopped with SIGINT, which
the agent turns into its shutdown (safe state, offline status); killed if that hangs.
"""

import json
import os
import signal
import subprocess
import sys

from tests import mpyunix

FROZEN = os.path.join(mpyunix.BIN_DIR, 'micropython-hashpilot')
BUILD_SH = os.path.join(mpyunix.ROOT, 'build', 'micropython', 'build.sh')
_built = []


def frozen_binary():
    """The Unix port with the current sources frozen in (build.sh frozen, once per session)."""
    mpyunix.require()
    if not _built:
        proc = subprocess.run([BUILD_SH, 'frozen'], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        _built.append(FROZEN)
    return FROZEN


def profiles(tmp_path):
    """The shipped tuner profiles as the port reads them (JSON)."""
    path = os.path.join(str(tmp_path), 'profiles.json')
    proc = subprocess.run([sys.executable, os.path.join(mpyunix.ROOT, 'build', 'micropython',
                                                        'stage.py'), '--profiles', path],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return path


def heap_lines(text):
    out = []
    for line in text.splitlines():
        if line.startswith('{"heap"'):
            out.append(json.loads(line)['heap'])
    return out


class MpyAgentProcess:
    def __init__(self, tmp_path, ports_file, broker, site='lab', rig='bx', heapsize='256K', **cfg):
        self.dir = str(tmp_path)
        conf = {'ports_file': str(ports_file), 'broker': '127.0.0.1:%d' % broker.port,
                'site': site, 'rig': rig, 'state_dir': os.path.join(self.dir, 'state')}
        conf.update(cfg)
        self.cfg_path = os.path.join(self.dir, 'mpy-agent.json')
        with open(self.cfg_path, 'w') as f:
            json.dump(conf, f)
        self.log_path = os.path.join(self.dir, 'mpy-agent.log')
        env = dict(os.environ)
        env.pop('MICROPYPATH', None)
        code = 'import sys; from port.unix_main import main; sys.exit(main(["unix_main", %r]))' % self.cfg_path
        self.proc = subprocess.Popen([frozen_binary(), '-X', 'heapsize=' + heapsize, '-c', code],
                                     cwd=self.dir, env=env, stdout=open(self.log_path, 'w'),
                                     stderr=subprocess.STDOUT)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout_s=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
