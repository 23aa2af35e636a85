"""The agent's tuner session: the [tuner] config section, the autotune / set_power_target
commands, one Tuner run at a time on its own cancellable scheduler timer, results saved once."""

import logging

from agent import options
from agent.alarms import event
from agent.autotune import profile as tune_profile
from agent.autotune import store as tune_store
from agent.autotune.halio import ControlLoopIO
from agent.autotune.tuner import Tuner
from agent.autotune.validate import (validate_autotune, validate_set_dynamic_scaling,
                                     validate_set_heat_budget, validate_set_power_target)

log = logging.getLogger(__name__)

SECTION = options.section('tuner', [
    options.opt('profile', 'str', '', 'autotune profile to run at start; empty = none'),
    options.opt('results_dir', 'str', '', 'tune results; empty = <state_dir>/tune'),
    options.opt('heat_budget_w', 'float', 0.0, 'cap on the heat into the room (W): runs the '
                'profile (default heat) in heat mode at start; 0 = none', 1.0, 100000.0,
                auto=0.0),
    options.opt('dynamic_scaling', 'bool', False, 'when safety derates a board, re-plan its '
                'chips (least hashes per watt give up frequency first) instead of a flat cap'),
])
IDLE_STEP_S = 5.0


def next_wake(nxt, now_s, idle_s=IDLE_STEP_S):
    """When to step the tuner again: the wake time step() returned, or, when it returned none
    or a past one, idle_s from now (the agent's timer, the bench and `hashpilot tune` alike)."""
    return nxt if nxt is not None and nxt > now_s else now_s + idle_s


class TuneSession:
    """Starts, steps, stops and saves tuner runs on the control thread."""

    def __init__(self, section, model, control, supervisor, scheduler, clock, state_dir,
                 on_event, hooks=None, min_period_s=0.0, load_profile=None, store=None):
        # load_profile(name) -> profile dict; store: save/load_saved. Defaults: TOML profiles and
        # atomic POSIX files; the MicroPython port passes JSON profiles and its flash store.
        self.load_profile = load_profile or tune_profile.load
        self.store = store or tune_store
        self.model = model
        self.control = control
        self.supervisor = supervisor
        self.scheduler = scheduler
        self.clock = clock
        self.on_event = on_event
        self.min_period_s = min_period_s   # wall-time floor of time-warped runs
        self.hooks = hooks
        self.nonces = None        # WorkEngine when [work] tuner_source = "nonces" (runner sets it)
        self.results_dir = section['results_dir'] or state_dir.rstrip('/') + '/tune'
        self.start_profile = section['profile']
        self.heat_budget_w = section['heat_budget_w']
        control.dynamic_scaling = bool(section['dynamic_scaling'])
        if self.start_profile:
            try:
                self.load_profile(self.start_profile)
            except options.ConfigError as e:
                raise options.ConfigError('tuner.profile: %s' % e)
        self.tuner = None
        self.saved = False
        self._timer = None

    def power_range_w(self):
        return tune_profile.power_range_w(self.model, self.supervisor.cfg['power_limit_w'])

    def register_commands(self, registry):
        lo, hi = self.power_range_w()
        registry.register('autotune', validate_autotune, self._autotune_cmd)
        registry.register('set_power_target', validate_set_power_target,
                          lambda a: self.start(self._profile_name(), 'power', a['w']),
                          {'power_min_w': lo, 'power_max_w': hi})
        registry.register('set_heat_budget', validate_set_heat_budget,
                          lambda a: self.start(self._heat_profile(), 'heat', a['w']),
                          {'heat_min_w': lo * 0.5, 'heat_max_w': hi})
        registry.register('set_dynamic_scaling', validate_set_dynamic_scaling,
                          self._dynamic_scaling_cmd)

    def _heat_profile(self):
        return self.tuner.prof['name'] if self.tuner is not None else 'heat'

    def _dynamic_scaling_cmd(self, a):
        self.control.dynamic_scaling = a['on']
        return {'dynamic_scaling': a['on']}

    def _profile_name(self):
        return self.tuner.prof['name'] if self.tuner is not None else 'balanced'

    def _autotune_cmd(self, a):
        if a['action'] == 'stop':
            return {'stopped': self.stop()}
        return self.start(a['profile'], a.get('mode'), a.get('target'))

    def start_configured(self):
        """The [tuner] profile at agent start, if any; a refused target is logged, not fatal."""
        if not self.start_profile and not self.heat_budget_w:
            return
        try:
            if self.heat_budget_w:
                self.start(self.start_profile or 'heat', 'heat', self.heat_budget_w)
            else:
                self.start(self.start_profile)
        except ValueError as e:   # e.g. a target out of range for this rig: mine untuned
            log.error('tuner.profile %s not started: %s', self.start_profile, e)

    def _target_range(self, prof):
        if prof['mode'] == 'power':
            lo, hi = self.power_range_w()
            return lo, hi, 'W'
        if prof['mode'] == 'heat':          # heat = wall x heat_share, wall inside the power range
            lo, hi = self.power_range_w()
            return lo * prof['heat_share'], hi * prof['heat_share'], 'W'
        if prof['mode'] == 'thermal':       # die ceiling: never above the model's hot limit
            return 30.0, float(self.model['temp_hot_c']), 'C'
        nominal_ths = tune_profile.resolve_target(dict(prof, target=0.0, target_rel=1.0), self.model)
        return 0.05 * nominal_ths, 1.5 * nominal_ths, 'TH/s'

    def start(self, profile_name, mode=None, target=None):
        """Start (or restart) a run; ValueError when the profile or target is refused."""
        try:
            prof = self.load_profile(profile_name)
        except options.ConfigError as e:
            raise ValueError(str(e))
        if mode is not None:
            prof = dict(prof, mode=mode)
        if target is None:
            target = tune_profile.resolve_target(prof, self.model)
        lo, hi, unit = self._target_range(prof)
        if not lo <= target <= hi:
            raise ValueError('%s target %.1f %s outside %.1f..%.1f %s'
                             % (prof['mode'], target, unit, lo, hi, unit))
        io = ControlLoopIO(self.control, self.clock, safety_ok=self._safety_ok,
                           power_limit_w=self.supervisor.cfg['power_limit_w'],
                           nonces=self.nonces)
        saved = self.store.load_saved(self.results_dir, io.board_ids())
        self.stop()
        self.tuner = Tuner(io, prof, target, saved=saved)
        self.saved = False
        self._xseen = 0
        self.on_event(event('rig.tune_done', 'clear', 'info', 'a new autotune run started'))
        self.on_event(event('rig.nonce_xcheck', 'clear', 'info', 'a new autotune run started'))
        self._timer = self.scheduler.add_timer(self._tick, self.clock.monotonic())
        log.info('autotune: profile %s, %s target %.1f%s', prof['name'], prof['mode'], target,
                 ' (reusing saved results)' if saved else '')
        return {'profile': prof['name'], 'mode': prof['mode'], 'target': target,
                'reused': bool(saved)}

    def stop(self):
        """End the run; chips keep the frequencies they have now. -> True if one was running."""
        was = self.tuner is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.tuner = None
        return was

    def _safety_ok(self):
        return self.supervisor.get_status().get('state') == 'normal'

    def _tick(self, now):
        tuner = self.tuner
        nxt = tuner.step(now)
        self._xcheck_alarm(getattr(tuner.io, 'xcheck', None))
        if tuner.stage == 'done' and not self.saved:
            self.saved = True
            self._save(tuner.result())
        return max(next_wake(nxt, now), now + self.min_period_s)

    def _xcheck_alarm(self, x):
        """Nonce source: raise when the counters (still read) disagree with the nonce counts
        beyond the Poisson bound (UART losing nonces, nonces counted to the wrong chip)."""
        if x is None or x.disagree == self._xseen:
            return
        self._xseen = x.disagree
        self.on_event(event('rig.nonce_xcheck', 'raise', 'warning',
                            'nonce counts disagree with the counters in %d of %d spans '
                            '(%.0f nonces missing, %.0f extra)'
                            % (x.disagree, x.checked, x.missing, x.extra)))

    def _save(self, res):
        paths = self.store.save(self.results_dir, res)
        jth = res.get('j_per_th')     # None: no good hashes (every chip dead)
        self.on_event(event('rig.tune_done', 'raise', 'info', 'autotune done: %.0f W, %.2f TH/s, '
                            '%s J/TH' % (res['power_w'] or 0.0, res['good_ths'] or 0.0,
                                         '%.2f' % jth if jth is not None else 'n/a')))
        if self.hooks is not None:
            self.hooks.fire({'event': 'tune_finished', 'result_files': paths,
                             'power_w': res['power_w'], 'j_per_th': res['j_per_th']})
