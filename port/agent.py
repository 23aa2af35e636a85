"""The agent on MicroPython: the same core as `hashpilot run` (hal chain driver, control loop,
safety supervisor and fan PID, telemetry builders, command validation) composed with the
port's adapters (serial, I2C parts, umqtt link, flash outbox, one-thread loop).

    agent = MpyAgent(cfg, chain_transport, i2c_bus, identity, heartbeat)
    agent.run()           # until stop() or cfg['stop_after_s'] simulated seconds

cfg keys: see DEFAULTS. Board I/O: hal/board_bitaxe.py over machine.I2C (ESP32) or
hal/board_i2c.BoardI2C (Unix port against the simulator). With "pool" entries the work path
runs on the same loop (port/work.py): Stratum jobs to the chip, every nonce checked, shares
submitted, pool rows in telemetry as `hashpilot run` publishes them.
"""

import gc
import json
import sys
import time

from agent import commands, telemetry
from agent.alarms import AlarmBook
from agent import options
from agent.autotune import session as tune_session
from agent.control import ControlLoop
from agent.safety import Supervisor
from hal import families, models
from hal.board_bitaxe import BitaxeBoardController
from hal.chain import ChainDriver
from hal.limits import HardwareLimits
from mqtt_schema import payloads
from port.loop import NEVER, Loop
from port import tune_store
from port.rig import SingleBoardRig

VERSION = 'hashpilot-mpy 0.1'
CONTROL_PERIOD_S = 1.0
MIN_WALL_PERIOD_S = 0.1
CMD_MAX_AGE_S = 60.0
HW_WATCHDOG_FACTOR = 2.0
# Duplicate-nonce window (hal/recent.RecentKeys, memory fixed at start): hal/chain's 4096 keys
# would take about a third of a 256 KB heap; a one-chip board's duplicates come from its last
# few jobs.
RECENT_NONCES = 256
# With the work path on, every nonce is SHA-256d checked and shares are filtered for repeats
# (port/work.py): a short window leaves the ~20 KB (table + 256 keys) to the work path.
RECENT_NONCES_WORK = 32
DEFAULTS = {'model': 'GAMMA', 'site': 'lab', 'rig': 'bitaxe', 'broker': '127.0.0.1:1883',
            'format': 'cbor', 'telemetry_s': 10.0, 'chips_s': 60.0, 'poll_s': 2.0,
            'freq_mhz': 0.0, 'baud': 0, 'time_scale': 1.0, 'state_dir': 'state',
            'outbox_max_bytes': 128 << 10, 'outbox_flush_s': 30.0, 'keepalive_s': 30,
            'stop_after_s': 0.0, 'heap_report_s': 0.0, 'safety': {}, 'profiles': '',
            'pool': [], 'work': {}}
EXTRA_KEYS = ('chain', 'board', 'ports_file', 'client_id', 'username', 'password',
              'work_check_bits')


def settings(cfg):
    """DEFAULTS overlaid with cfg; unknown keys refused with their names."""
    extra = [k for k in cfg if k not in DEFAULTS and k not in EXTRA_KEYS]
    if extra:
        raise ValueError('unknown config key(s): %s' % ', '.join(sorted(extra)))
    out = dict(DEFAULTS)
    out.update(cfg)
    return out


def load_profiles(path):
    """Tuner profiles as JSON (TOML needs CPython): `build/micropython/stage.py --profiles FILE`
    writes agent/profiles/*.toml there, validated. -> load_profile(name) for TuneSession."""
    profiles = {}
    if path:
        with open(path) as f:
            profiles = json.load(f)

    def load(name):
        if name not in profiles:
            raise options.ConfigError('unknown profile %r (on this board: %s)'
                                      % (name, ', '.join(sorted(profiles)) or 'none'))
        return dict(profiles[name])
    return load


def fastest_baud(family, transport):
    """The family's fastest rate that the serial adapter can set (a pty only has the standard
    termios rates; an ESP32 UART has them all)."""
    ok = getattr(transport, 'supports_baud', lambda b: True)
    for b in sorted(family['fast_bauds'], reverse=True):
        if ok(b):
            return b
    return families.RESET_BAUD


class Health:
    """Controller health for telemetry's ctrl map: heap in use and the outbox's filesystem."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.min_free = None
        self.peak_used = 0

    def sample(self):
        gc.collect()
        free = gc.mem_free()
        used = gc.mem_alloc()
        if self.min_free is None or free < self.min_free:
            self.min_free = free
        self.peak_used = max(self.peak_used, used)
        return free, used

    def get_status(self):
        free, used = self.sample()
        out = {'mem_pct': 100.0 * used / (used + free)}
        try:
            import os
            st = os.statvfs(self.state_dir)
            out['disk_pct'] = 100.0 * (st[2] - st[3]) / st[2] if st[2] else None
        except (OSError, AttributeError, ImportError):
            pass
        return out


class MpyAgent:
    def __init__(self, cfg, chain_transport, i2c_bus, clock, link_factory, identity=None,
                 heartbeat=None, kick=None):
        self.cfg = cfg = settings(cfg)
        self.model = models.get(cfg['model'])
        self.family = families.get(self.model['chip'])
        self.clock = clock
        self.limits = HardwareLimits(self.model, self.family)
        self.alarms = AlarmBook(self._publish_alarm)   # the one book: supervisor and all others
        self.supervisor = Supervisor(self.model, cfg['safety'], alarms=self.alarms)
        board = BitaxeBoardController(i2c_bus, self.model, self.limits, identity=identity,
                                      heartbeat=heartbeat)
        chain = ChainDriver(chain_transport, self.family, clock=clock, limits=self.limits,
                            recent_nonces=RECENT_NONCES_WORK if cfg['pool'] else RECENT_NONCES)
        self.rig = SingleBoardRig(self.model, self.limits, chain, board)
        self.baud = cfg['baud'] or fastest_baud(self.family, chain_transport)
        self.control = ControlLoop(self.rig, self.supervisor, clock, on_event=self._on_event,
                                   start_freq_mhz=cfg['freq_mhz'] or None, chain_baud=self.baud)
        self.kick = kick                    # feeds a hardware watchdog each completed tick
        self.health = Health(cfg['state_dir'])
        self.link = link_factory(cfg)
        self.loop = Loop(clock, idle=self._idle, on_error=self._task_failed)
        self.tune = tune_session.TuneSession(
            options.build(tune_session.SECTION, {}), self.model, self.control, self.supervisor,
            self.loop, clock, cfg['state_dir'], self._on_event,
            min_period_s=MIN_WALL_PERIOD_S * clock.time_scale,
            load_profile=load_profiles(cfg['profiles']), store=tune_store)
        self.work = None                    # built in start(), after the meta (_build_work)
        self.identify_until_s = None
        self.started_s = None
        self.published = 0
        self.polls = 0
        self.commands_ok = 0
        self.commands_refused = 0
        self.commands = self._commands()
        self._last_service_wall = 0.0

    def _build_work(self):
        """The work path when pools are configured. Imported and built only then, and after
        the first meta is encoded: its modules and objects take ~23 KB, and encoding the 2.9 KB
        meta needs blocks a fuller heap did not have (2 start-ups in 3 failed with MemoryError).
        work_check_bits: a simulator's reduced nonce difficulty, None for real chips."""
        cfg = self.cfg
        if not cfg['pool']:
            return
        from port import work as port_work
        self.work = port_work.PortWork(cfg, self.rig.chains, self.family, self.loop, self.clock,
                                       self._on_event, cfg.get('work_check_bits'))
        if self.work.tuner_source == 'nonces':
            self.tune.nonces = self.work.engine
        self.work.register_commands(self.commands)     # switch_pool

    # -- events and commands ------------------------------------------------------------------
    def _task_failed(self, fn, exc):
        sys.print_exception(exc) if hasattr(sys, 'print_exception') else print(repr(exc))

    def _on_event(self, ev):
        self.alarms.event(ev)

    def _publish_alarm(self, ev):
        try:
            self.link.publish('alarm', payloads.build_alarm(
                self.link.session, ev['id'], ev['action'], ev.get('severity', 'warning'),
                ev.get('message', ''), board=ev.get('board')))
        except (ValueError, KeyError) as e:
            print('alarm %r not published: %s' % (ev, e))

    def _commands(self):
        """The same command registry as `hashpilot run`: features register their own."""
        reg = commands.Registry(max_age_s=CMD_MAX_AGE_S)
        self.supervisor.register_commands(reg)
        self.control.register_commands(reg)
        reg.register('identify', commands.validate_identify, self._c_identify)
        reg.register('rebirth', commands.no_args, self._c_rebirth)
        self.tune.register_commands(reg)
        return reg

    def on_command(self, op, data):
        try:
            res = self.commands.submit_payload(op, data, source='mqtt', now_unix_s=time.time())
        except MemoryError:
            # a fragmented heap can refuse one block with plenty free: answer, never go silent
            gc.collect()
            res = {'ok': False, 'id': commands.command_id(data), 'result': None,
                   'error': 'out of memory while handling %s; try again' % op}
        if res['ok']:
            self.commands_ok += 1
        else:
            self.commands_refused += 1
        self.link.publish('cmd/result', payloads.build_cmd_result(
            self.link.session, res['id'], res['ok'], error=res['error'], op=op,
            result=res['result']))
        return res

    def _c_rebirth(self, a):
        # birth and the meta bytes encoded at start, as the CPython link does: re-encoding the
        # 2.9 KB meta needs a block a fragmented heap may not have (MemoryError, no result)
        self.link.rebirth()

    def _c_identify(self, a):
        self.identify_until_s = self.clock.monotonic() + a['duration_s']
        self.alarms.raise_('rig.identify', 'info', 'identify requested for %.0f s'
                           % a['duration_s'], self.clock.monotonic())
        self.loop.add_timer(self._identify_end, self.identify_until_s)

    def _identify_end(self, now):
        if self.identify_until_s is not None and now >= self.identify_until_s:
            self.identify_until_s = None
            self.alarms.clear('rig.identify', 'identify ended', now)
        return NEVER

    # -- timers ---------------------------------------------------------------------------------
    def _period(self, now, period_s):
        return now + max(period_s, MIN_WALL_PERIOD_S * self.clock.time_scale)

    def _tick(self, now):
        self.control.tick(now)
        if self.kick is not None:
            self.kick()
        return self._period(now, CONTROL_PERIOD_S)

    def _poll(self, now):
        self.control.poll_chains()
        self.polls += 1
        period = self.cfg['poll_s'] if self.polls > 2 else min(1.2, self.cfg['poll_s'])
        return self._period(now, period)

    def status(self):
        return telemetry.collect(self.control, self.rig, self.supervisor, self.health,
                                 self.tune.tuner,
                                 self.link, uptime_s=self.clock.monotonic() - self.started_s,
                                 work=self.work.engine if self.work is not None else None)

    def _telemetry(self, now):
        self.link.publish('telemetry', payloads.build_telemetry(self.status(), self.link.session))
        self.published += 1
        return self._period(now, self.cfg['telemetry_s'])

    def _chips(self, now):
        self.link.publish('chips', payloads.build_chips(self.status(), self.link.session))
        return self._period(now, self.cfg['chips_s'])

    def _heap_report(self, now):
        free, used = self.health.sample()
        print(json.dumps({'heap': {'t_s': round(now - self.started_s, 1), 'free': free,
                                   'used': used, 'min_free': self.health.min_free,
                                   'peak_used': self.health.peak_used,
                                   'published': self.published,
                                   'link': self.link.get_status()}}))
        return self._period(now, self.cfg['heap_report_s'])

    def _stop_at(self, now):
        self.loop.stop()
        return NEVER

    def _idle(self, now):
        wall = self.clock.wall()
        if wall - self._last_service_wall < 0.05:
            return
        self._last_service_wall = wall
        self.link.service()
        while self.link.inbox:
            op, data = self.link.inbox.pop(0)
            self.on_command(op, data)

    def _publish_meta(self):
        try:
            ids = [self.rig.board.board_id(0)]
        except Exception:
            ids = ['']
        self.link.set_meta(payloads.build_meta(
            self.model, self.link.session, firmware=VERSION, board_ids=ids,
            telemetry_s=int(self.cfg['telemetry_s']), chips_s=int(self.cfg['chips_s']),
            fmt=self.cfg['format'], pools=[p['url'] for p in self.cfg['pool']] or None))

    # -- life cycle -----------------------------------------------------------------------------
    def start(self):
        self.rig.board.init()
        self._publish_meta()
        self.link.service()
        self._build_work()                  # before the chip is powered: a bad pool stops here
        counts = self.rig.start(freq_mhz=self.control.requested_mhz[0][0],
                                baud=self.baud if self.baud != families.RESET_BAUD else None)
        if counts[0] != self.model['chips_per_board']:
            self.alarms.raise_('board0.chips_missing', 'warning', 'board 0: %d of %d chips found'
                               % (counts[0], self.model['chips_per_board']), board=0)
        try:
            self.rig.board.set_heartbeat_watchdog(HW_WATCHDOG_FACTOR * self.supervisor.watchdog_s)
        except Exception as e:
            print('heartbeat watchdog not armed: %s' % e)
        now = self.clock.monotonic()
        self.started_s = now
        self.loop.add_timer(self._tick, now)
        self.loop.add_timer(self._poll, now)
        self.loop.add_timer(self._telemetry, now + min(3.0, self.cfg['telemetry_s']))
        self.loop.add_timer(self._chips, now + min(10.0, self.cfg['chips_s']))
        if self.work is not None:
            self.work.start(now)
        if self.cfg['heap_report_s']:
            self.loop.add_timer(self._heap_report, now)
        if self.cfg['stop_after_s']:
            self.loop.add_timer(self._stop_at, now + self.cfg['stop_after_s'])
        return counts

    def run(self):
        self.start()
        self.loop.run()

    def shutdown(self):
        self.control.safe_state()
        self.alarms.raise_('rig.stopped', 'info', 'agent stopped; boards off, fans 100 %',
                           self.clock.monotonic())
        if self.work is not None:
            self.work.stop()
        self.link.stop()
        self.rig.close()
