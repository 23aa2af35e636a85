"""`hashpilot run`: wire the rig, safety, telemetry and the broker link to one control thread.

Threads: the control thread (scheduler) owns all hardware I/O; paho's loop thread and the link's
service thread only move MQTT bytes and enqueue commands; the watchdog thread puts the hardware
in its safe state if the control thread stops ticking; the hook runner's worker runs event hooks.
"""

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

from agent import __version__, commands, config, telemetry
from agent.alarms import AlarmBook
from agent import api as cgminer_api
from agent.autotune.session import TuneSession
from agent.control import ControlLoop
from agent.health import BoardHealth
from agent.inbox import CommandInbox
from agent.logsafe import RateLimit, printable
from agent.portsfile import read_ports_file
from agent.mqtt_link import MqttLink, settings_from_config
from agent.safety import Supervisor, Watchdog
from agent.safety.safestate import SafeStateWriter
from agent.scheduler import NEVER, Scheduler
from agent.work import wiring as work_wiring
from firmware_hooks import health as health_file
from firmware_hooks import sd_notify
from firmware_hooks.events import HookRunner
from hal import families, models
from hal.board import BoardError
from hal.board_sysfs import SysfsBoardController
from hal.clock import Clock
from hal.rig import Rig
from mqtt_schema import payloads

log = logging.getLogger('hashpilot')

CONTROL_PERIOD_S = 1.0        # physics seconds between safety ticks (all fans stopping heats dies ~9 °C/s)
MIN_WALL_PERIOD_S = 0.1       # no loop runs faster than this in wall time (time-warped tests)
CMD_MAX_AGE_S = 60.0
LINK_CHECK_S = 2.0            # storage / broker trouble checked this often (physics s)
EXIT_RESTART = 75             # restart requested (cgminer API): non-zero so init systems restart us
MAX_ECHO_ERROR = 240          # characters of a refusal reason echoed on cmd/result
POLL_STALE_FACTOR = 3.0       # chip poll silent for this many periods = poll path dead
# The board controller's own heartbeat watchdog backs up the in-process one: it fires when the
# whole agent is gone (kill -9, frozen, crashed before systemd restarts it).
HW_WATCHDOG_FACTOR = 2.0
# A stall is a stall in real time: in a time-warped run (tests, demo) a loaded host pausing the
# process for half a second is 10 simulated seconds at scale 20. Both watchdogs wait at least
# this long in wall time (at scale 1 the configured watchdog_s, 2..600 s, is longer anyway).
WATCHDOG_MIN_WALL_S = 2.0


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
    """The [safety] section for the Supervisor, with the [fan] section and the stale limit
    derived from the poll period when it is left at 0."""
    out = dict(cfg['safety'], fan=dict(cfg['fan']))
    if not out.get('die_stale_s'):
        out['die_stale_s'] = poll_stale_s(cfg)
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
        self.alarms = AlarmBook(self._publish_alarm)   # the one book: supervisor and all others
        try:
            self.supervisor = Supervisor(self.model, safety_settings(cfg), alarms=self.alarms)
        except ValueError as e:
            raise config.ConfigError('safety: %s' % e)
        self.watchdog = Watchdog(max(self.supervisor.watchdog_s,
                                     WATCHDOG_MIN_WALL_S * self.clock.time_scale))
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
        self.inbox = CommandInbox(self.scheduler, self._on_command, on_busy=self._busy)
        try:
            self.link = MqttLink(settings_from_config(
                cfg, os.path.join(self.state_dir, 'outbox'), 'hashpilot %s' % __version__,
                self.model['name']), self.inbox)
        except ValueError as e:
            raise config.ConfigError(str(e))
        self.health = BoardHealth()
        hooks_dir = cfg['hooks']['dir']
        self.hooks = HookRunner(hooks_dir, cfg['hooks']['timeout_s']) if hooks_dir else None
        self.work = work_wiring.build(cfg, self.rig, self.scheduler, self.clock, self._on_event)
        self.pools = self.work.pools if self.work is not None else None   # status() for the API
        self.tune = TuneSession(cfg['tuner'], self.model, self.control, self.supervisor,
                                self.scheduler, self.clock, self.state_dir, self._on_event,
                                self.hooks, MIN_WALL_PERIOD_S * self.clock.time_scale)
        if self.work is not None and cfg['work']['tuner_source'] == 'nonces':
            self.tune.nonces = self.work.engine
        self.commands = commands.Registry(max_age_s=CMD_MAX_AGE_S,
                                          guard=commands.build_guard(cfg['commands']))
        self.refusal_log = RateLimit(burst=20, per_s=1.0)
        self.supervisor.register_commands(self.commands)
        self.control.register_commands(self.commands)
        self.tune.register_commands(self.commands)
        self.commands.register('identify', commands.validate_identify, self._identify)
        self.commands.register('rebirth', commands.no_args, self._rebirth)
        if self.work is not None:
            self.work.register_commands(self.commands)   # switch_pool
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
        self.alarms.event(ev)

    @property
    def active_alarms(self):
        return set(self.alarms.active)

    @property
    def alarm_info(self):
        """Active alarm id -> {'id', 'severity', 'message'} (the cgminer API's view)."""
        return dict((k, {'id': a['id'], 'severity': a['severity'], 'message': a['message']})
                    for k, a in self.alarms.active.items())

    def _publish_alarm(self, ev):
        """The alarm book's sink: log, MQTT, hooks (each change once)."""
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

    @property
    def tuner(self):
        return self.tune.tuner

    def _on_command(self, op, data):
        """A cmd/<op> payload from the broker (control thread): validate, apply, answer."""
        res = self.commands.submit_payload(op, data, source='mqtt', now_unix_s=time.time())
        self._answer(res)
        return res

    def run_command(self, op, cid, args, source):
        """Validate and apply one command (control thread), whoever sent it (MQTT, cgminer API);
        the outcome goes to cmd/result. Returns (ok, error, result)."""
        res = self.commands.submit(op, args, cid=cid, source=source)
        self._answer(res)
        return res['ok'], res['error'], res['result']

    def _busy(self, op, cid):
        self._answer({'ok': False, 'op': op, 'id': cid, 'source': 'mqtt', 'result': None,
                      'error': 'busy: command queue full, not applied (send again later)'})

    def _answer(self, res):
        # op, id and error text come from the sender: escaped (no forged log lines), and
        # refusals rate-limited (a flood of junk must not fill the disk with warnings).
        op, cid = printable(res['op'], 40), printable(res['id'], 64)
        if res['ok']:
            log.info('command %s %s (%s) applied', op, cid, res['source'])
        else:
            ok, dropped = self.refusal_log.allow(time.monotonic())
            if ok:
                log.warning('command %s %s (%s) refused: %s%s', op, cid, res['source'],
                            printable(res['error'], 200),
                            ' (%d refusals not logged before this one)' % dropped if dropped else '')
        err = res['error']
        if isinstance(err, str) and len(err) > MAX_ECHO_ERROR:   # echoed text stays small
            err = err[:MAX_ECHO_ERROR - 3] + '...'
        self.link.publish('cmd/result', payloads.build_cmd_result(
            self.link.session, res['id'], res['ok'], error=err, op=res['op'],
            result=res['result']))

    def request_restart(self):
        """Stop safely and exit with EXIT_RESTART: the init system starts the agent again."""
        self.exit_code = EXIT_RESTART
        self.scheduler.request_stop()

    def call_command(self, op, args, source, timeout_s=5.0):
        """Thread-safe front-end entry (e.g. an API server thread): the command runs through
        the registry on the control thread; returns its result dict."""
        done = threading.Event()
        box = []

        def run():
            try:
                box.append(self.commands.submit(op, args, source=source))
            finally:
                done.set()

        self.scheduler.call_soon(run)
        if not done.wait(timeout_s) or not box:
            return {'ok': False, 'op': op, 'id': '', 'source': source, 'result': None,
                    'error': 'no answer from the control thread within %.0f s (it may still '
                             'apply the command)' % timeout_s}
        return box[0]

    def _rebirth(self, args):
        self._publish_meta()
        self.link.rebirth()

    def _identify(self, args):
        # No LED on the simulated controller: an info alarm that clears after the duration
        # is what a fleet view shows (a real port maps it to the board LED).
        self.identify_until_s = self.clock.monotonic() + args['duration_s']
        self.alarms.raise_('rig.identify', 'info', 'identify requested for %.0f s'
                           % args['duration_s'], self.clock.monotonic())
        self.scheduler.add_timer(self._identify_end, self.identify_until_s)

    def _identify_end(self, now):
        if self.identify_until_s is not None and now >= self.identify_until_s:
            self.identify_until_s = None
            self.alarms.clear('rig.identify', 'identify ended', now)
        return NEVER

    # -- timers (control thread) ------------------------------------------------------------------
    def _period(self, now, period_s):
        return now + max(period_s, MIN_WALL_PERIOD_S * self.clock.time_scale)

    def _poll_alive(self, now):
        """The watchdog covers the chip poll too: a poll loop that died (its timer raised) or
        stopped completing starves the watchdog, which then holds the rig safe."""
        quiet_s = now - self.last_poll_s
        alive = quiet_s <= self.poll_stale_s
        if alive == ('rig.poll_stalled' in self.alarms):
            self.alarms.set('rig.poll_stalled', not alive, 'critical',
                            'chip poll running again' if alive else
                            'no chip poll completed for %.0f s: watchdog not fed, rig to safe state '
                            'in %.0f s' % (quiet_s, self.watchdog.timeout_s), now)
            if not alive:   # one more chance for a timer that died; an older one ends itself
                self._start_poll(now)
        return alive

    def _tick(self, now):
        stalled_s = self.watchdog.stalled_s(now)
        feed = self._poll_alive(now)
        if self.watchdog.tripped:
            # Our watchdog thread switched every board off: not a power loss to report.
            self.control.all_off()
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
        if 'rig.hw_watchdog' in self.alarms:
            self.alarms.clear('rig.hw_watchdog', 'the agent controls the rig again', now)
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
                if 'rig.health_file' in self.alarms:
                    self._storage_alarm('rig.health_file', False, 'health file written again')
            except OSError as e:
                self._storage_alarm('rig.health_file', True, 'health file not written: %s' % e)
        return self._period(now, self.cfg['telemetry']['telemetry_s'])

    def _storage_alarm(self, aid, on, message, severity='warning'):
        self.alarms.set(aid, on, severity, message, self.clock.monotonic())

    def _check_link(self, now):
        """Storage and broker troubles become alarms (raised and cleared once, logged)."""
        st = self.link.get_status()
        problems = self.state_problems + st.get('outbox_problems', [])
        if problems and 'rig.state_dir' not in self.alarms:
            extra = '' if st.get('outbox_persistent', True) else '; outbox in RAM only (no persistence)'
            self._storage_alarm('rig.state_dir', True, 'state dir: %s%s' % ('; '.join(problems[:4]), extra))
        if st.get('outbox_lost') and not self._lost_reported:
            self._lost_reported = True
            self._storage_alarm('rig.outbox_lost', True, 'outbox: %d unsent records lost to state dir '
                                'corruption' % st['outbox_lost'])
        failing = bool(st.get('outbox_failing'))
        if failing != ('rig.outbox_write' in self.alarms):
            self._storage_alarm('rig.outbox_write', failing,
                                'outbox writes failing (%s): unsent data kept in RAM, %d dropped so far'
                                % (st.get('outbox_last_error'), st.get('dropped', 0)) if failing else
                                'outbox writes work again (%d dropped)' % st.get('dropped', 0))
        taken = bool(st.get('taken_over'))
        if taken != ('rig.mqtt_takeover' in self.alarms):
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
            if not self.watchdog.expired(now):
                continue
            if not self.watchdog.tripped or time.monotonic() - last_apply >= 1.0:
                # Hardware first, then the trip count, then words: logging may block on the
                # same handler lock the stalled thread holds. Repeated every second while the
                # stall lasts.
                sent = self.safe_writer.apply()
                last_apply = time.monotonic()
                if self.watchdog.check(now) == 'trip':
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
                self.alarms.raise_('board%d.chips_missing' % i, 'warning',
                                   'board %d: %d of %d chips found'
                                   % (i, n, self.model['chips_per_board']), board=i)
        hw_s = HW_WATCHDOG_FACTOR * self.watchdog.timeout_s
        try:
            trips = self.rig.board.set_heartbeat_watchdog(hw_s)
            if trips is not None:
                log.info('board controller heartbeat watchdog armed: %.0f s (%d earlier trips)',
                         hw_s, trips)
                if trips:
                    self.alarms.raise_('rig.hw_watchdog', 'warning',
                                       'the board controller watchdog has made the rig safe %d '
                                       'time(s) since it powered up' % trips)
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
        self.tune.start_configured()
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
        self.alarms.raise_('rig.stopped', severity, msg, self.clock.monotonic())
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
