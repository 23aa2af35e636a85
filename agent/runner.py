"""`hashpilot run`: wire the rig, safety, telemetry and the broker link to one control thread.

Threads: the control thread (scheduler) owns all hardware I/O; paho's loop thread and the link's
service thread only move MQTT bytes and enqueue commands; the watchdog thread puts the hardware
in its safe state if the control thread stops ticking; the hook runner's worker runs event hooks.
"""

import argparse
import json
import logging
import os
import queue
import signal
import sys
import threading
import time

from agent import __version__, commands, config, telemetry
from agent import api as cgminer_api
from agent.autotune import profile as tune_profile
from agent.autotune import store as tune_store
from agent.autotune.halio import ControlLoopIO
from agent.autotune.tuner import Tuner
from agent.control import ControlLoop
from agent.health import BoardHealth
from agent.mqtt_link import MqttLink
from agent.safety import Supervisor, Watchdog
from agent.scheduler import NEVER, Scheduler
from agent.work import wiring as work_wiring
from firmware_hooks import health as health_file
from firmware_hooks import sd_notify
from firmware_hooks.events import HookRunner
from hal import board_protocol, families, models
from hal.board import BoardError
from hal.board_sysfs import SysfsBoardController
from hal.clock import Clock
from hal.rig import Rig
from hal.transport import Transport
from mqtt_schema import consumer, payloads

log = logging.getLogger('hashpilot')

CONTROL_PERIOD_S = 1.0        # physics seconds between safety ticks (all fans stopping heats dies ~9 °C/s)
MIN_WALL_PERIOD_S = 0.1       # no loop runs faster than this in wall time (time-warped tests)
CMD_MAX_AGE_S = 60.0
LINK_CHECK_S = 2.0            # storage / broker trouble checked this often (physics s)
EXIT_RESTART = 75             # restart requested (cgminer API): non-zero so init systems restart us
POLL_STALE_FACTOR = 3.0       # chip poll silent for this many periods = poll path dead
# The board controller's own heartbeat watchdog backs up the in-process one: it fires when the
# whole agent is gone (kill -9, frozen, crashed before systemd restarts it).
HW_WATCHDOG_FACTOR = 2.0


class SafeStateWriter:
    """Watchdog side channel: fire-and-forget safe-state frames on its own port handle (or
    its own sysfs controller), so a control thread stuck in a transaction cannot hold it up.
    """

    def __init__(self, board_url, sysfs_board=None):
        self.transport = Transport(board_url, 115200) if board_url and sysfs_board is None else None
        self.sysfs_board = sysfs_board
        self.seq = 0x80

    def apply(self):
        if self.sysfs_board is not None:
            try:
                self.sysfs_board.set_fan_duty(None, 100)
                self.sysfs_board.set_enabled(None, False)
                return True
            except Exception as e:
                log.error('watchdog: writing the safe state failed: %s', e)
                return False
        if self.transport is None:
            return False
        frames = b''
        for _ in range(2):   # twice: a frame garbled on the line is not fatal
            for cmd, payload in ((board_protocol.SET_FAN, bytes([board_protocol.ALL, 100])),
                                 (board_protocol.SET_ENABLE, bytes([board_protocol.ALL, 0]))):
                self.seq = (self.seq + 1) & 0xFF
                frames += board_protocol.encode(self.seq, cmd, payload)
        try:
            self.transport.write(frames)
            return True
        except Exception as e:
            log.error('watchdog: writing the safe state failed: %s', e)
            return False

    def close(self):
        if self.transport is not None:
            self.transport.close()


class CommandInbox:
    """Looks like a queue to the MQTT link; hands each command to the control thread."""

    def __init__(self, scheduler, handler, max_pending=256):
        self.scheduler = scheduler
        self.handler = handler
        self.pending = 0
        self.max_pending = max_pending
        self._lock = threading.Lock()

    def put_nowait(self, item):
        with self._lock:
            if self.pending >= self.max_pending:
                raise queue.Full
            self.pending += 1
        self.scheduler.call_soon(self._run, item)

    def _run(self, item):
        with self._lock:
            self.pending -= 1
        self.handler(*item)


def resolve_rig(cfg):
    """Model, chain URLs, board URL and time scale from the config and the ports file."""
    rc = cfg['rig']
    ports = {}
    if rc['ports_file']:
        ports = read_ports_file(rc['ports_file'])
    model = rc['model'] or ports.get('model')
    if not model:
        raise config.ConfigError('rig.model: not set and no ports file names it')
    chains = rc['chains'] or ports.get('chains') or []
    board = rc['board'] or ports.get('board') or ''
    if not chains:
        raise config.ConfigError('rig.chains: no chain ports (set rig.chains or rig.ports_file)')
    try:
        m = models.get(model)
    except KeyError as e:
        raise config.ConfigError('rig.model: %s' % e.args[0])
    if len(chains) != m['boards']:
        raise config.ConfigError('rig.chains: %s has %d boards, %d chain ports given'
                                 % (model, m['boards'], len(chains)))
    if rc['board_backend'] == 'serial' and not board:
        raise config.ConfigError('rig.board: no board controller port')
    if rc['board_backend'] == 'sysfs':
        board = ''
    scale = rc['time_scale'] or float(ports.get('time_scale', 1.0))
    return m, chains, board, scale


PORTS_TYPES = {'model': str, 'chains': list, 'board': str, 'baud': int,
               'time_scale': (int, float), 'pid': int, 'seed': int, 'work_check_bits': int}


def read_ports_file(path):
    """The simulator's ports file as a dict, every known field of the right type; anything
    else (a list, junk, a 5000-deep nest, a huge file) is a clear ConfigError."""
    where = 'rig.ports_file %s' % path
    try:
        with open(path, 'rb') as f:
            raw = f.read((1 << 20) + 1)
        if len(raw) > 1 << 20:
            raise ValueError('larger than 1 MiB')
        ports = json.loads(raw)
    except RecursionError:
        raise config.ConfigError('%s: nested too deeply' % where)
    except (OSError, ValueError) as e:
        raise config.ConfigError('%s: %s' % (where, e))
    if not isinstance(ports, dict):
        raise config.ConfigError('%s: expected a JSON object, got %s' % (where, type(ports).__name__))
    for key, kind in PORTS_TYPES.items():
        v = ports.get(key)
        if v is not None and (not isinstance(v, kind) or isinstance(v, bool)):
            raise config.ConfigError('%s: %r must be %s' % (where, key, getattr(kind, '__name__', 'a number')))
    if any(not isinstance(c, str) for c in ports.get('chains') or []):
        raise config.ConfigError('%s: chains must be port names (strings)' % where)
    ts = ports.get('time_scale')
    if ts is not None and not (0.01 <= ts <= 10000.0):   # also refuses nan and inf
        raise config.ConfigError('%s: time_scale %r outside 0.01..10000' % (where, ts))
    return ports


def chain_baud(cfg, family):
    baud = cfg['rig']['baud']
    if baud == 0:   # fastest the family supports
        return max(family['fast_bauds']) if family['fast_bauds'] else families.RESET_BAUD
    if baud != families.RESET_BAUD and baud not in family['fast_bauds']:
        raise config.ConfigError('rig.baud: %s cannot run at %d baud (supported: %s)'
                                 % (family['name'], baud,
                                    ', '.join(str(b) for b in [families.RESET_BAUD] + sorted(family['fast_bauds']))))
    return baud


def poll_stale_s(cfg):
    """Die readings (and the chip poll) older than this are stale: a few missed polls."""
    return min(1800.0, max(10.0, POLL_STALE_FACTOR * cfg['telemetry']['poll_s']))


def safety_settings(cfg):
    s, f = cfg['safety'], cfg['fan']
    out = {'control_source': s['control_source'], 'watchdog_s': s['watchdog_s'],
           'die_stale_s': poll_stale_s(cfg),
           'fan': {'mode': f['mode'], 'manual_duty_pct': f['manual_duty_pct'],
                   'min_pct': f['min_pct'], 'max_pct': f['max_pct']}}
    for key in ('temp_target_c', 'temp_hot_c', 'temp_danger_c', 'power_limit_w'):
        if s[key]:
            out[key] = s[key]
    return out


def mqtt_settings(cfg, model, state_dir):
    m = cfg['mqtt']
    host, _, port = m['broker'].rpartition(':')
    out = {'site': cfg['rig']['site'], 'rig': cfg['rig']['rig'], 'host': host, 'port': int(port),
           'format': m['format'], 'keepalive_s': m['keepalive_s'],
           'backoff_min_s': m['backoff_min_s'], 'backoff_max_s': m['backoff_max_s'],
           'state_dir': os.path.join(state_dir, 'outbox'),
           'outbox_max_bytes': cfg['state']['outbox_max_bytes'],
           'outbox_flush_s': cfg['state']['outbox_flush_s'],
           'firmware': 'hashpilot %s' % __version__, 'model': model['name']}
    if m['failover']:
        out['failover'] = list(m['failover'])
    if m['client_id']:
        out['client_id'] = m['client_id']
    if m['username']:
        out['username'] = m['username']
        if m['password_file']:
            try:
                with open(m['password_file']) as fh:
                    out['password'] = fh.read().strip()
            except OSError as e:
                raise config.ConfigError('mqtt.password_file: %s' % e)
    if m['tls_ca'] or m['tls_cert']:
        # A client certificate alone means TLS verified by the system CA store, never plaintext.
        out['tls'] = True
        if m['tls_ca']:
            out['ca_file'] = m['tls_ca']
        if m['tls_cert']:
            out['cert_file'] = m['tls_cert']
            out['key_file'] = m['tls_key']
    return out


class Agent:
    """Composition root: builds the parts, registers their timers, runs, and shuts down safely."""

    def __init__(self, cfg, rig=None):
        self.cfg = cfg
        self.model, chain_urls, board_url, scale = resolve_rig(cfg)
        self.family = families.get(self.model['chip'])
        self.baud = chain_baud(cfg, self.family)
        self.clock = Clock(scale)
        self.state_dir = cfg['state']['state_dir']
        self.state_problems = []
        try:
            os.makedirs(self.state_dir, exist_ok=True)
        except OSError as e:   # mine anyway: persistence is what suffers, not control
            self.state_problems.append('state dir %s unusable: %s' % (self.state_dir, e))
        self.scheduler = Scheduler(self.clock, on_error=self._task_failed)
        try:
            self.supervisor = Supervisor(self.model, safety_settings(cfg))
        except ValueError as e:
            raise config.ConfigError('safety: %s' % e)
        self.watchdog = Watchdog(self.supervisor.watchdog_s)
        self.rig = rig or Rig(self.model, chain_urls, board_url or None, clock=self.clock,
                              address_rule=cfg['rig']['address_rule'])
        sysfs_safe = None
        if cfg['rig']['board_backend'] == 'sysfs':
            self.rig.board = self._sysfs_board()
            sysfs_safe = self._sysfs_board()
        self.safe_writer = SafeStateWriter(board_url, sysfs_safe)
        self.control = ControlLoop(self.rig, self.supervisor, self.clock, on_event=self._on_event,
                                   start_freq_mhz=cfg['rig']['freq_mhz'] or None,
                                   chain_baud=self.baud)
        self.inbox = CommandInbox(self.scheduler, self._on_command)
        try:
            self.link = MqttLink(mqtt_settings(cfg, self.model, self.state_dir), self.inbox)
        except ValueError as e:
            raise config.ConfigError(str(e))
        self.health = BoardHealth()
        hooks_dir = cfg['hooks']['dir']
        self.hooks = HookRunner(hooks_dir, cfg['hooks']['timeout_s']) if hooks_dir else None
        self.tuner = None
        self.tuner_saved = False
        self.tuner_gen = 0
        self.active_alarms = set()
        self.alarm_info = {}          # active alarm id -> id, severity, message
        self.work = work_wiring.build(cfg, self.rig, self.scheduler, self.clock, self._on_event)
        self.pools = self.work.pools if self.work is not None else None   # status() for the API
        if cfg['tuner']['profile']:
            try:
                tune_profile.load(cfg['tuner']['profile'])
            except config.ConfigError as e:
                raise config.ConfigError('tuner.profile: %s' % e)
        self.started_wall = time.monotonic()
        self.identify_until_s = None
        self.published = 0
        self.polls = 0
        self._tick_ok = True
        self._lost_reported = False
        self.poll_stale_s = poll_stale_s(cfg)
        self.last_poll_s = 0.0
        self.poll_gen = 0
        self._wd_stop = threading.Event()
        self.exit_code = 0
        try:
            self.api = cgminer_api.attach(self)   # None unless [api] listen is set
        except ValueError as e:
            raise config.ConfigError('api: %s' % e)

    def _sysfs_board(self):
        path = self.cfg['rig']['sysfs_map']
        try:
            with open(path) as f:
                mapping = json.load(f)
            return SysfsBoardController(self.cfg['rig']['sysfs_root'], mapping, self.rig.limits)
        except (OSError, ValueError, BoardError) as e:
            raise config.ConfigError('rig.sysfs_map %s: %s' % (path, e))

    # -- events and commands (control thread) ---------------------------------------------------
    def _task_failed(self, fn, exc):
        log.error('control task %s failed: %r', getattr(fn, '__name__', fn), exc, exc_info=exc)

    def _on_event(self, ev):
        aid, action = ev.get('id'), ev.get('action')
        # Each alarm is raised once and cleared once, whoever reports it.
        if action == 'raise':
            if aid in self.active_alarms:
                return
            self.active_alarms.add(aid)
            self.alarm_info[aid] = {'id': aid, 'severity': ev.get('severity', 'warning'),
                                    'message': ev.get('message', '')}
        elif action == 'clear':
            if aid not in self.active_alarms:
                return
            self.active_alarms.discard(aid)
            self.alarm_info.pop(aid, None)
        level = logging.WARNING if ev.get('severity') != 'info' else logging.INFO
        log.log(level, 'alarm %s %s: %s', ev.get('id'), ev.get('action'), ev.get('message'))
        try:
            self.link.publish('alarm', payloads.build_alarm(
                self.link.session, ev['id'], ev['action'], ev.get('severity', 'warning'),
                ev.get('message', ''), board=ev.get('board')))
        except (ValueError, KeyError) as e:
            log.error('alarm %r not published: %s', ev, e)
        if self.hooks is not None:
            self.hooks.fire({'event': 'alarm_' + ('raised' if ev.get('action') == 'raise' else 'cleared'),
                             'alarm': ev})

    def _result(self, cid, op, ok, error=None, result=None):
        self.link.publish('cmd/result', payloads.build_cmd_result(
            self.link.session, cid if isinstance(cid, str) else '', ok, error=error, op=op,
            result=result))

    def _cmd_ctx(self):
        lim = self.rig.limits
        return {'boards': self.model['boards'], 'chips_per_board': self.model['chips_per_board'],
                'freq_min_mhz': lim.freq_min_mhz, 'freq_max_mhz': lim.freq_max_mhz,
                'fan_min_pct': self.cfg['fan']['min_pct'],
                'power_min_w': round(0.2 * self.model['nameplate_w']),
                'power_max_w': self.supervisor.cfg['power_limit_w']}

    def _on_command(self, op, data):
        cmd, err = consumer.parse_command(op, data)
        if cmd is None:
            cid = None
            try:
                cid = json.loads(data).get('id')
            except Exception:
                pass
            log.warning('command %s refused: %s', op, err)
            return self._result(cid, op, False, err)
        err = commands.expired(cmd.get('ts_ms'), time.time(), CMD_MAX_AGE_S)
        if err is not None:
            log.warning('command %s %s refused: %s', op, cmd['id'], err)
            return self._result(cmd['id'], op, False, err)
        self.run_command(op, cmd['id'], cmd['args'], 'mqtt')

    def run_command(self, op, cid, args, source):
        """Validate and apply one command (control thread), whoever sent it (MQTT, cgminer API);
        the outcome goes to cmd/result. Returns (ok, error, result)."""
        checked, err = commands.validate(op, cid, args, self._cmd_ctx())
        if err is not None:
            log.warning('command %s %s (%s) refused: %s', op, cid, source, err)
            self._result(cid, op, False, err)
            return False, err, None
        try:
            result = self._apply_command(checked)
        except ValueError as e:   # still refused by a lower layer (limits, safety): nothing changed
            self._result(cid, op, False, str(e))
            return False, str(e), None
        log.info('command %s %s (%s) applied', op, cid, source)
        self._result(cid, op, True, result=result)
        return True, None, result

    def request_restart(self):
        """Stop safely and exit with EXIT_RESTART: the init system starts the agent again."""
        self.exit_code = EXIT_RESTART
        self.scheduler.request_stop()

    def _apply_command(self, cmd):
        op, a = cmd['op'], cmd['args']
        if op == 'set_fan':
            self.supervisor.set_fan_mode(a['mode'], a.get('duty_pct'))
        elif op == 'set_frequency':
            self.control.request_frequency(a['mhz'], a['board'], a['chip'])
        elif op == 'rebirth':
            self._publish_meta()
            self.link.rebirth() if hasattr(self.link, 'rebirth') else None
        elif op == 'identify':
            # No LED on the simulated controller: an info alarm that clears after the duration
            # is what a fleet view shows (a real port maps it to the board LED).
            self.identify_until_s = self.clock.monotonic() + a['duration_s']
            self._on_event({'id': 'rig.identify', 'action': 'raise', 'severity': 'info',
                            'message': 'identify requested for %.0f s' % a['duration_s']})
            self.scheduler.add_timer(self._identify_end, self.identify_until_s)
        elif op == 'reset_safety':
            return {'reset_boards': self.supervisor.reset(a['board'], self.clock.monotonic())}
        elif op == 'autotune':
            if a['action'] == 'stop':
                was = self.tuner is not None
                self.tuner = None   # chips keep the frequencies they have now
                self.tuner_gen += 1
                return {'stopped': was}
            return self.start_tuner(a['profile'], a.get('mode'), a.get('target'))
        elif op == 'set_power_target':
            name = self.tuner.prof['name'] if self.tuner is not None else 'balanced'
            return self.start_tuner(name, 'power', a['w'])
        return None

    def _identify_end(self, now):
        if self.identify_until_s is not None and now >= self.identify_until_s:
            self.identify_until_s = None
            self._on_event({'id': 'rig.identify', 'action': 'clear', 'severity': 'info',
                            'message': 'identify ended'})
        return NEVER

    # -- autotune (control thread) ------------------------------------------------------------
    def _results_dir(self):
        return self.cfg['tuner']['results_dir'] or os.path.join(self.state_dir, 'tune')

    def _safety_ok(self):
        return self.supervisor.get_status().get('state') == 'normal'

    def start_tuner(self, profile_name, mode=None, target=None):
        """Start (or restart) the tuner; ValueError when the profile or target is refused."""
        try:
            prof = tune_profile.load(profile_name)
        except config.ConfigError as e:
            raise ValueError(str(e))
        if mode is not None:
            prof = dict(prof, mode=mode)
        if target is None:
            target = tune_profile.resolve_target(prof, self.model)
        if prof['mode'] == 'power':
            lo, hi = round(0.2 * self.model['nameplate_w']), self.supervisor.cfg['power_limit_w']
            unit = 'W'
        else:
            nominal_ths = tune_profile.resolve_target(dict(prof, target=0.0, target_rel=1.0), self.model)
            lo, hi, unit = 0.05 * nominal_ths, 1.5 * nominal_ths, 'TH/s'
        if not lo <= target <= hi:
            raise ValueError('%s target %.1f %s outside %.1f..%.1f %s'
                             % (prof['mode'], target, unit, lo, hi, unit))
        io = ControlLoopIO(self.control, self.clock, safety_ok=self._safety_ok,
                           power_limit_w=self.supervisor.cfg['power_limit_w'])
        saved = tune_store.load_saved(self._results_dir(), io.board_ids())
        self.tuner = Tuner(io, prof, target, saved=saved)
        self.tuner_saved = False
        self._on_event({'id': 'rig.tune_done', 'action': 'clear', 'severity': 'info',
                        'message': 'a new autotune run started'})
        # A new generation: the timer of an earlier run ends itself instead of being reused.
        self.tuner_gen += 1
        gen = self.tuner_gen
        self.scheduler.add_timer(lambda now: self._tune_tick(now, gen), self.clock.monotonic())
        log.info('autotune: profile %s, %s target %.1f%s', prof['name'], prof['mode'], target,
                 ' (reusing saved results)' if saved else '')
        return {'profile': prof['name'], 'mode': prof['mode'], 'target': target,
                'reused': bool(saved)}

    def _tune_tick(self, now, gen):
        tuner = self.tuner
        if tuner is None or gen != self.tuner_gen:
            return NEVER
        nxt = tuner.step(now)
        if tuner.stage == 'done' and not self.tuner_saved:
            self.tuner_saved = True
            res = tuner.result()
            paths = tune_store.save(self._results_dir(), res)
            self._on_event({'id': 'rig.tune_done', 'action': 'raise', 'severity': 'info',
                            'message': 'autotune done: %.0f W, %.2f TH/s, %.2f J/TH'
                                       % (res['power_w'], res['good_ths'], res['j_per_th'])})
            if self.hooks is not None:
                self.hooks.fire({'event': 'tune_finished', 'result_files': paths,
                                 'power_w': res['power_w'], 'j_per_th': res['j_per_th']})
        if nxt is None or nxt <= now:
            nxt = now + 5.0
        return self._period(now, nxt - now)

    # -- timers (control thread) ------------------------------------------------------------------
    def _period(self, now, period_s):
        return now + max(period_s, MIN_WALL_PERIOD_S * self.clock.time_scale)

    def _poll_alive(self, now):
        """The watchdog covers the chip poll too: a poll loop that died (its timer raised) or
        stopped completing starves the watchdog, which then holds the rig safe."""
        quiet_s = now - self.last_poll_s
        alive = quiet_s <= self.poll_stale_s
        if alive == ('rig.poll_stalled' in self.active_alarms):
            self._on_event({'id': 'rig.poll_stalled', 'action': 'clear' if alive else 'raise',
                            'severity': 'info' if alive else 'critical',
                            'message': 'chip poll running again' if alive else
                            'no chip poll completed for %.0f s: watchdog not fed, rig to safe state '
                            'in %.0f s' % (quiet_s, self.watchdog.timeout_s)})
            if not alive:   # one more chance for a timer that died; an older one ends itself
                self._start_poll(now)
        return alive

    def _tick(self, now):
        stalled_s = self.watchdog.stalled_s(now)
        feed = self._poll_alive(now)
        if self.watchdog.tripped:
            # Our watchdog thread switched every board off: not a power loss to report.
            self.control.enabled = [False] * len(self.control.enabled)
            self.supervisor.note_stall(now, stalled_s, 'control loop' if feed else 'chip poll')
            if feed:
                self.watchdog.kick(now)
        elif self._tick_ok and feed:
            self.watchdog.kick(now)   # alive at the start of a tick, if the last one completed
        self._tick_ok = False
        self.control.tick(now)
        self._tick_ok = True          # a tick that keeps raising stops feeding the watchdog
        if feed:
            self.watchdog.kick(self.clock.monotonic())
        if 'rig.hw_watchdog' in self.active_alarms:
            self._on_event({'id': 'rig.hw_watchdog', 'action': 'clear', 'severity': 'info',
                            'message': 'the agent controls the rig again'})
        sd_notify.watchdog()
        return self._period(now, CONTROL_PERIOD_S)

    def _start_poll(self, now):
        self.poll_gen += 1
        gen = self.poll_gen
        self.scheduler.add_timer(lambda t: self._poll(t, gen), now)

    def _poll(self, now, gen=None):
        if gen is not None and gen != self.poll_gen:
            return NEVER
        self.control.poll_chains()
        self.last_poll_s = self.clock.monotonic()
        self.polls += 1
        # Two quick polls first: a hashrate needs two counter reads, and the first telemetry
        # should already carry one.
        period = self.cfg['telemetry']['poll_s'] if self.polls > 2 else min(1.2, self.cfg['telemetry']['poll_s'])
        return self._period(now, period)

    def status(self):
        return telemetry.collect(self.control, self.rig, self.supervisor, self.health,
                                 self.tuner, self.link, uptime_s=time.monotonic() - self.started_wall,
                                 work=self.work.engine if self.work is not None else None)

    def _telemetry(self, now):
        self.link.publish('telemetry', payloads.build_telemetry(self.status(), self.link.session))
        self.published += 1
        if self.link.is_connected():
            try:
                health_file.write_health(self.state_dir, __version__, healthy=True,
                                         published=self.published)
                if 'rig.health_file' in self.active_alarms:
                    self._storage_alarm('rig.health_file', False, 'health file written again')
            except OSError as e:
                self._storage_alarm('rig.health_file', True, 'health file not written: %s' % e)
        return self._period(now, self.cfg['telemetry']['telemetry_s'])

    def _storage_alarm(self, aid, on, message, severity='warning'):
        self._on_event({'id': aid, 'action': 'raise' if on else 'clear',
                        'severity': severity if on else 'info', 'message': message})

    def _check_link(self, now):
        """Storage and broker troubles become alarms (raised and cleared once, logged)."""
        st = self.link.get_status()
        problems = self.state_problems + st.get('outbox_problems', [])
        if problems and 'rig.state_dir' not in self.active_alarms:
            extra = '' if st.get('outbox_persistent', True) else '; outbox in RAM only (no persistence)'
            self._storage_alarm('rig.state_dir', True, 'state dir: %s%s' % ('; '.join(problems[:4]), extra))
        if st.get('outbox_lost') and not self._lost_reported:
            self._lost_reported = True
            self._storage_alarm('rig.outbox_lost', True, 'outbox: %d unsent records lost to state dir '
                                'corruption' % st['outbox_lost'])
        failing = bool(st.get('outbox_failing'))
        if failing != ('rig.outbox_write' in self.active_alarms):
            self._storage_alarm('rig.outbox_write', failing,
                                'outbox writes failing (%s): unsent data kept in RAM, %d dropped so far'
                                % (st.get('outbox_last_error'), st.get('dropped', 0)) if failing else
                                'outbox writes work again (%d dropped)' % st.get('dropped', 0))
        taken = bool(st.get('taken_over'))
        if taken != ('rig.mqtt_takeover' in self.active_alarms):
            self._storage_alarm('rig.mqtt_takeover', taken,
                                'another client uses our MQTT client id %r: backing off (see the '
                                'broker ACL: use_username_as_clientid)' % self.link.client_id
                                if taken else 'MQTT session kept again', severity='critical')
        return self._period(now, LINK_CHECK_S)

    def _chips(self, now):
        self.link.publish('chips', payloads.build_chips(self.status(), self.link.session))
        return self._period(now, self.cfg['telemetry']['chips_s'])

    def _publish_meta(self):
        ids = []
        for i in range(self.model['boards']):
            try:
                ids.append(self.rig.board.board_id(i))
            except Exception:
                ids.append('')
        self.link.set_meta(payloads.build_meta(
            self.model, self.link.session, firmware='hashpilot %s' % __version__, board_ids=ids,
            telemetry_s=int(self.cfg['telemetry']['telemetry_s']),
            chips_s=int(self.cfg['telemetry']['chips_s']), fmt=self.cfg['mqtt']['format'],
            pools=self.work.urls() if self.work is not None else None))

    # -- watchdog thread ----------------------------------------------------------------------------
    def _watchdog_loop(self):
        # Poll at 1/20 of the timeout (wall time) so the trip lands close to the timeout.
        period_s = min(0.2, self.clock.to_wall(self.watchdog.timeout_s) / 20.0)
        last_apply = 0.0
        while not self._wd_stop.wait(period_s):
            now = self.clock.monotonic()
            first = self.watchdog.check(now) == 'trip'
            if first or (self.watchdog.expired(now) and time.monotonic() - last_apply >= 1.0):
                # Hardware first, words after: logging may block on the same handler lock
                # the stalled thread holds. Repeated every second while the stall lasts.
                sent = self.safe_writer.apply()
                last_apply = time.monotonic()
                if first:
                    log.critical('control loop stalled for %.1f s: %s', self.watchdog.stalled_s(now),
                                 'safe-state frames sent (boards off, fans 100 %)' if sent else
                                 'writing the safe state FAILED')

    # -- life cycle -----------------------------------------------------------------------------------
    def start(self):
        log.info('hashpilot %s: %s, %d chains, %d baud, time scale %g', __version__,
                 self.model['name'], len(self.rig.chains), self.baud, self.clock.time_scale)
        self._publish_meta()
        self.link.start()
        counts = self.rig.start(freq_mhz=self.control.requested_mhz[0][0], baud=self.baud
                                if self.baud != families.RESET_BAUD else None)
        for i, n in enumerate(counts):
            log.info('chain %d: %d chips', i, n)
            if n != self.model['chips_per_board']:
                self._on_event({'id': 'board%d.chips_missing' % i, 'action': 'raise',
                                'severity': 'warning', 'board': i,
                                'message': 'board %d: %d of %d chips found'
                                           % (i, n, self.model['chips_per_board'])})
        hw_s = HW_WATCHDOG_FACTOR * self.watchdog.timeout_s
        try:
            trips = self.rig.board.set_heartbeat_watchdog(hw_s)
            if trips is not None:
                log.info('board controller heartbeat watchdog armed: %.0f s (%d earlier trips)',
                         hw_s, trips)
                if trips:
                    self._on_event({'id': 'rig.hw_watchdog', 'action': 'raise', 'severity': 'warning',
                                    'message': 'the board controller watchdog has made the rig '
                                               'safe %d time(s) since it powered up' % trips})
        except Exception as e:
            log.warning('board controller heartbeat watchdog not armed: %s', e)
        now = self.clock.monotonic()
        self.last_poll_s = now
        self.scheduler.add_timer(self._tick, now)
        self._start_poll(now)
        self.scheduler.add_timer(self._telemetry, now + min(3.0, self.cfg['telemetry']['telemetry_s']))
        self.scheduler.add_timer(self._chips, now + min(10.0, self.cfg['telemetry']['chips_s']))
        self.scheduler.add_timer(self._check_link, now)
        threading.Thread(target=self._watchdog_loop, name='watchdog', daemon=True).start()
        if self.work is not None:
            self.work.start(now)
        if self.api is not None:
            self.api.start(now)
        if self.cfg['tuner']['profile']:
            try:
                self.start_tuner(self.cfg['tuner']['profile'])
            except ValueError as e:   # e.g. a target out of range for this rig: mine untuned
                log.error('tuner.profile %s not started: %s', self.cfg['tuner']['profile'], e)
        sd_notify.ready('mining')

    def run(self):
        self.start()
        self.scheduler.run()

    def _stop_safe_state(self):
        """Write the safe state and say what actually happened (message, severity)."""
        if self.control.safe_state():
            return 'agent stopped; boards off, fans 100 %', 'info'
        if self.safe_writer.apply():
            msg = ('agent stopped; the board controller refused the safe state, safe-state frames '
                   'sent unconfirmed: boards may still be powered')
        else:
            msg = 'agent stopped; writing the safe state FAILED: boards may still be powered'
        log.critical(msg)
        return msg, 'critical'

    def shutdown(self):
        sd_notify.stopping('stopping')
        self._wd_stop.set()
        log.info('stopping: boards off, fans 100 %')
        msg, severity = self._stop_safe_state()
        self._on_event({'id': 'rig.stopped', 'action': 'raise', 'severity': severity,
                        'message': msg})
        if self.api is not None:
            self.api.close()
        if self.hooks is not None:
            self.hooks.fire({'event': 'shutting_down'})
            self.hooks.close(wait_s=2.0)
        if self.work is not None:
            self.work.stop()
        self.link.stop()
        self.rig.close()
        self.safe_writer.close()


def build_parser():
    p = argparse.ArgumentParser(prog='hashpilot run',
                                description='Run the agent: control loop, safety, MQTT telemetry.')
    config.add_flags(p)
    p.add_argument('--log-level', default='INFO',
                   choices=('DEBUG', 'INFO', 'WARNING', 'ERROR'))
    return p


def main(argv):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    try:
        cfg = config.from_args(args)
        agent = Agent(cfg)
    except config.ConfigError as e:
        print('hashpilot run: config error: %s' % e, file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print('hashpilot run: cannot start: %s' % e, file=sys.stderr)
        return 1

    def on_signal(signum, frame):
        agent.scheduler.request_stop()   # a flag only: nothing here may take a lock

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        agent.run()
    finally:
        agent.shutdown()
    return agent.exit_code
