"""`hashpilot demo`: a simulated S21, a local Mosquitto (if none listens) and the agent, with a
live console view of what the agent publishes, until Ctrl-C; then everything is cleaned up.

The view is an MQTT subscriber like any farm tool: it shows only what reached the broker.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
from agent.cli import summary
from paho.mqtt.enums import CallbackAPIVersion

from mqtt_schema import consumer


def _listening(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _self_cmd():
    """argv prefix that runs this same hashpilot (installed script, frozen binary or source)."""
    if getattr(sys, 'frozen', False):
        return [sys.executable]
    return [sys.executable, '-m', 'agent']


class View:
    """Keeps the latest decoded messages and renders a text screen."""

    def __init__(self, root, clock=time.monotonic):
        self.root = root
        self.latest = {}
        self.received = {}           # kind -> clock() when it last arrived
        self.alarms = []
        self.lock = threading.Lock()
        self.clock = clock

    def on_message(self, client, userdata, msg):
        kind = msg.topic[len(self.root):]
        try:
            dec = consumer.decode(msg.topic, msg.payload)
        except ValueError:
            return
        with self.lock:
            self.latest[kind] = dec
            self.received[kind] = self.clock()
            if kind == 'alarm':
                self.alarms.append(dec)
                self.alarms = self.alarms[-6:]

    def render(self, width=78):
        with self.lock:
            t = self.latest.get('telemetry')
            status = self.latest.get('status')
            meta = self.latest.get('meta') or {}
            alarms = list(self.alarms)
            got_t = self.received.get('telemetry')
        period = meta.get('telemetry_s', 10)
        lines = self._head(status, meta)
        if not t:
            lines.append('')
            lines.append('waiting for telemetry: the agent scans and starts the chains first; the '
                         'first numbers come about 15 s after start, then every %s s' % period)
            return '\n'.join(lines)
        lines += self._rig(t) + self._boards(t.get('boards') or [])
        lines.append('')
        lines.append('telemetry received %.0f s ago (the agent sends it every %s s)'
                     % (self.clock() - got_t, period))
        ctl = t.get('ctrl') or {}
        if ctl:
            lines.append('')
            lines.append('control board: cpu %s%%  mem %s%%  agent rss %s MB'
                         % (ctl.get('cpu_pct'), ctl.get('mem_pct'), ctl.get('agent_rss_mb', '?')))
        if alarms:
            lines.append('')
            lines.append('recent alarms:')
            for a in alarms:
                lines.append('  %-5s %-8s %s' % (a.get('event'), a.get('severity'),
                                                 a.get('message', '')[:width - 18]))
        return '\n'.join(lines)

    def _head(self, status, meta):
        lines = ['hashpilot demo  %s  (Ctrl-C to stop)' % self.root.rstrip('/')]
        if status:
            lines.append('agent: %s  %s  boot %s' % ('online' if status.get('online') else 'OFFLINE',
                                                     status.get('firmware', ''), status.get('boot_id')))
        if meta:
            lines.append('rig: %s, %d boards x %d %s chips'
                         % (meta['model'], meta['boards'], meta['chips_per_board'], meta['chip']))
        return lines

    def _rig(self, t):
        hr_ths = (t.get('hashrate_ghs') or 0.0) / 1000.0
        p = t.get('power_w')
        jth = (p / hr_ths) if p and hr_ths > 0.1 else None
        fans = t.get('fan_duty_pct') or []
        rpms = t.get('fan_rpm') or []
        return ['', 'state %-8s  hashrate %7.2f TH/s  power %s  efficiency %s'
                % (t.get('state'), hr_ths, '%5.0f W' % p if p else '    ? W',
                   '%5.2f J/TH' % jth if jth else '  ? J/TH'),
                'fans  ' + '  '.join('%3.0f%% %5.0f rpm' % (d or 0, r or 0)
                                     for d, r in zip(fans, rpms))]

    def _boards(self, boards):
        lines = ['', 'board  TH/s    MHz  die max  board sensors C      mV  chips  safety',
                 '                             intake  outlet']
        below = False
        for b in boards:
            temps = list(b.get('temps_c') or [])
            temps += [None] * (2 - len(temps))
            die = b.get('temp_max_c')
            below = below or (die is not None and temps[-1] is not None and die < temps[-1])
            lines.append('%5d %6.2f %6.1f  %6s  %6s  %6s  %6s  %5s  %s' % (
                b.get('index', 0), (b.get('hashrate_ghs') or 0) / 1000.0, b.get('freq_avg_mhz') or 0,
                _c(die), _c(temps[0]), _c(temps[1]),
                '%d' % b['voltage_mv'] if b.get('voltage_mv') else '-',
                b.get('chips_ok', '-'), b.get('safety') or '-'))
        if below:
            lines.append('(a die below the outlet sensor: normal for the first minute or so; the air '
                         'heats at once, the dies warm with a ~30 s time constant)')
        return lines


def _c(v):
    return '%.1f' % v if v is not None else '-'


def _lock(host, port):
    """One demo per broker address on this machine: a second one would share the broker and
    the client ids (the two agents would kick each other off). -> open lock file, or None."""
    import fcntl
    path = os.path.join(tempfile.gettempdir(), 'hashpilot-demo-%s-%d.lock' % (host, port))
    f = open(path, 'a+')
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        other = f.read().strip() or '?'
        f.close()
        print('hashpilot demo: another demo (pid %s) already runs with the broker %s:%d; stop it '
              '(Ctrl-C in its terminal) or give this one its own: --broker %s:%d'
              % (other, host, port, host, port + 1), file=sys.stderr)
        return None
    f.seek(0)
    f.truncate()
    f.write('%d\n' % os.getpid())
    f.flush()
    return f


def main(argv):
    p = argparse.ArgumentParser(prog='hashpilot demo', description=summary(__doc__))
    p.add_argument('--model', default='S21', choices=('S19JPRO', 'S21', 'GAMMA'))
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--time-scale', type=float, default=1.0, help='simulator physics speed-up')
    p.add_argument('--broker', default='127.0.0.1:1883', help='use (or start) a broker here')
    p.add_argument('--duration-s', type=float, default=0.0, help='stop after this long (0 = Ctrl-C)')
    p.add_argument('--no-screen', action='store_true', help='print one line per update, no screen redraw')
    args = p.parse_args(argv)
    host, _, port = args.broker.rpartition(':')
    port = int(port)
    lock = _lock(host, port)
    if lock is None:
        return 3
    work = tempfile.mkdtemp(prefix='hashpilot-demo-')
    procs = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())

    def spawn(name, argv_):
        with open(os.path.join(work, name + '.log'), 'wb') as log:
            # Own session: Ctrl-C reaches only the demo, which then stops the agent first
            # (it leaves the rig safe) and the simulator and broker after it.
            proc = subprocess.Popen(argv_, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        procs.append((name, proc))
        return proc

    client = None
    try:
        if not _listening(host, port):
            mosq = shutil.which('mosquitto') or '/usr/sbin/mosquitto'
            if not os.path.exists(mosq):
                print('hashpilot demo: no broker at %s and no mosquitto installed '
                      '(run `make setup`)' % args.broker, file=sys.stderr)
                return 1
            conf = os.path.join(work, 'mosquitto.conf')
            with open(conf, 'w') as f:
                f.write('listener %d %s\nallow_anonymous true\n' % (port, host))
            spawn('mosquitto', [mosq, '-c', conf])
            for _ in range(50):
                if _listening(host, port):
                    break
                time.sleep(0.1)
            print('started a local Mosquitto on %s' % args.broker)
        ports = os.path.join(work, 'ports.json')
        spawn('sim', _self_cmd() + ['sim', '--model', args.model, '--seed', str(args.seed),
                                    '--time-scale', str(args.time_scale), '--ports-file', ports])
        for _ in range(100):
            if os.path.exists(ports):
                break
            time.sleep(0.1)
        else:
            print('hashpilot demo: simulator did not start; see %s/sim.log' % work, file=sys.stderr)
            return 1
        spawn('agent', _self_cmd() + ['run', '--ports-file', ports, '--broker', args.broker,
                                      '--site', 'demo', '--rig', args.model.lower(),
                                      '--state-dir', os.path.join(work, 'state')])
        root = 'hashpilot/v1/demo/%s/' % args.model.lower()
        view = View(root)
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id='hashpilot-demo-view-%d' % os.getpid())
        client.on_message = view.on_message
        client.on_connect = lambda c, u, f, rc, pr: c.subscribe(root + '#', qos=1)
        client.connect(host, port)
        client.loop_start()
        print('logs in %s' % work)
        t0 = time.monotonic()
        while not stop.is_set():
            screen = view.render()
            if args.no_screen:
                print(screen.splitlines()[-1] if view.latest.get('telemetry') is None else
                      [l for l in screen.splitlines() if l.startswith('state')][0])
            else:
                sys.stdout.write('\x1b[H\x1b[2J' + screen + '\n')
            sys.stdout.flush()
            for name, proc in procs:
                if proc.poll() is not None:
                    print('\n%s exited with %s; see %s/%s.log' % (name, proc.returncode, work, name))
                    return 1
            if args.duration_s and time.monotonic() - t0 >= args.duration_s:
                break
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        if client is not None:
            client.loop_stop()
            client.disconnect()
        for name, proc in reversed(procs):   # agent first: it leaves the rig safe
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        print('\nstopped; logs kept in %s' % work)
        lock.close()
    return 0
