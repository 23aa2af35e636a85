"""`hashpilot bench autotune`: the tuner against the simulator in its own process, bytes only.

The simulator runs on ptys with a truth file; the tuner sees the rig only through hal/rig.py
(ChainDriver + board controller client), fans held in manual at the scenario duty. When the tune
is done the result is held at steady state and scored from the truth file; the oracle
(hal/sim/oracle.py) gets the population from the truth header (the benchmark may read it, the
tuner never does). Prints stock / tuned / oracle J/TH, gap, power held vs target, hottest die and
the simulated minutes to converge.
"""

import argparse
import json
import os
import sys
import time

from hal import models
from hal.clock import Clock
from hal.rig import Rig
from hal.sim import oracle as O
from agent.cli import summary
from agent.autotune import maths
from agent.autotune import profile as PR
from agent.autotune.halio import RigIO
from agent.autotune.session import next_wake
from agent.autotune.tuner import Tuner
from agent import bench_nonces


def add_arguments(p):
    p.add_argument('--model', default='S21', type=str.upper, choices=sorted(models.MODELS),
                   help='simulated rig model (default S21)')
    p.add_argument('--seed', type=int, default=1, help='simulator seed: the chip population')
    p.add_argument('--sigma-f', type=float, default=0.05,
                   help='spread of the chips\' frequency limits (relative, default 0.05)')
    p.add_argument('--mode', default='power',
                   choices=('power', 'hashrate', 'efficiency', 'thermal', 'quiet', 'immersion',
                            'heat'),
                   help='tuning goal (default power); thermal: most hashes under --max-die-c; '
                        'quiet: most hashes with the fans capped at --max-fan-pct; immersion: '
                        'power mode (--target-w) with the boards in coolant at --coolant-c; '
                        'heat: most hashes with the heat into the room at --heat-budget-w')
    p.add_argument('--max-die-c', type=float, default=None,
                   help='die ceiling for thermal/quiet (default: the model\'s hot limit less '
                        'the profile\'s temp_margin_c)')
    p.add_argument('--max-fan-pct', type=float, default=60.0,
                   help='quiet: fan duty cap, fans held at it (default 60)')
    p.add_argument('--ambient-c', type=float, default=25.0,
                   help='simulated ambient air (default 25)')
    p.add_argument('--heat-budget-w', type=float, default=None,
                   help='heat: the heat into the room (W; default: the heat profile\'s, half '
                        'the nameplate); scored as power mode at wall = budget / heat share')
    p.add_argument('--heat-share', type=float, default=None,
                   help='heat: share of the wall power that heats the room (0.5..1; default '
                        'the profile\'s, 1.0: the whole miner in the room; 0.94: PSU outside)')
    p.add_argument('--coolant-c', type=float, default=30.0,
                   help='immersion: coolant temperature (default 30); no fans')
    p.add_argument('--ambient-step-c', type=float, default=0.0,
                   help='thermal/quiet: step the ambient by this much (C) at --ambient-step-at-s '
                        'and report the recovery (default 0: no step)')
    p.add_argument('--ambient-step-at-s', type=float, default=960.0,
                   help='simulated seconds from the simulator\'s start to the ambient step '
                        '(default 960: the 15-minute convergence goal plus a minute held)')
    p.add_argument('--recover-window-s', type=float, default=360.0,
                   help='simulated seconds observed after the ambient step (default 360)')
    p.add_argument('--table', action='store_true',
                   help='run the thermal/quiet matrix (models x modes x seeds x sigma_f, '
                        'scenarios in agent/bench_autotune_table.py) and print the table')
    p.add_argument('--table-models', default='S21,S19JPRO,GAMMA',
                   help='--table: comma-separated models (default S21,S19JPRO,GAMMA)')
    p.add_argument('--table-modes', default='thermal,quiet',
                   help='--table: comma-separated modes (default thermal,quiet)')
    p.add_argument('--table-seeds', default='1,2', help='--table: seeds (default 1,2)')
    p.add_argument('--table-backend', default='sim', choices=('sim', 'plant'),
                   help='--table: sim = through the simulator (default); plant = the in-process '
                        'plant (same physics, no ptys: for a machine too loaded to pace the '
                        'simulator)')
    p.add_argument('--table-sigmas', default='0.03,0.08',
                   help='--table: sigma_f values (default 0.03,0.08)')
    p.add_argument('--target-w', type=float, default=None, help='power mode target (W)')
    p.add_argument('--target-ths', type=float, default=None,
                   help='hashrate mode target / efficiency floor (TH/s)')
    p.add_argument('--time-scale', type=float, default=30.0,
                   help='simulator physics speed-up (default 30)')
    p.add_argument('--fan-duty-pct', type=float, default=70.0,
                   help='fans held at this duty while tuning (default 70)')
    p.add_argument('--baud', type=int, default=0,
                   help='chain baud after init; 0 = the fastest the chip family supports')
    p.add_argument('--max-sim-min', type=float, default=45.0,
                   help='give up after this many simulated minutes without a result (default 45)')
    p.add_argument('--hold-s', type=float, default=120.0,
                   help='simulated seconds the result is held and measured after tuning '
                        '(default 120)')
    bench_nonces.add_arguments(p)
    p.add_argument('--profile', default=None, help='profile name or file (mode/target flags win)')
    p.add_argument('--json', action='store_true', help='print the figures as one JSON object')
    p.add_argument('--keep-truth', action='store_true', help='keep the truth file')
    p.add_argument('--quiet', action='store_true', help='no progress lines on stderr')
    return p


def _tuner_mode(mode):
    """Quiet is thermal mode at a fan cap: the tuner sees the same problem. Immersion is power
    mode in coolant (no fans: the heat no longer binds, the PSU's watts do)."""
    if mode == 'immersion':
        return 'power'
    return 'thermal' if mode in ('thermal', 'quiet') else mode


def _fan_pct(args):
    if args.mode == 'immersion':
        return 0.0
    return min(args.max_fan_pct, 100.0) if args.mode == 'quiet' else args.fan_duty_pct


def _profile(args):
    """The tuner's profile: --profile (heat mode: the shipped 'heat' by default), its mode
    forced to the bench mode's, --heat-share over the profile's (ConfigError when refused)."""
    name = args.profile or ('heat' if args.mode == 'heat' else None)
    prof = PR.load(name) if name else PR.validate({'mode': _tuner_mode(args.mode)})
    prof = dict(prof, mode=_tuner_mode(args.mode))
    if args.mode == 'heat' and args.heat_share is not None:
        keys = dict((k, v) for k, v in prof.items() if k != 'name')
        prof = dict(PR.validate(dict(keys, heat_share=args.heat_share)), name=prof.get('name'))
    return dict(prof, nonce_uart_pct=args.uart_pct, nonce_host_rate_s=args.host_nonces_s)


def _target(args, model, prof):
    if args.mode == 'heat':
        return args.heat_budget_w if args.heat_budget_w else PR.resolve_target(prof, model)
    if prof['mode'] == 'thermal':
        return args.max_die_c if args.max_die_c else PR.resolve_target(prof, model)
    if args.mode in ('power', 'immersion'):
        return args.target_w if args.target_w else model['nameplate_w']
    if args.target_ths:
        return args.target_ths
    return PR.resolve_target(dict(prof, mode=args.mode), model)


def _immersion_args(args):
    return ['--immersion'] if args.mode == 'immersion' else []


def _air_c(args):
    return args.coolant_c if args.mode == 'immersion' else args.ambient_c


def _truth_last_t(path):
    """Simulator time of the last complete line of the truth file (0 when none yet)."""
    t = 0.0
    try:
        with open(path) as f:
            for line in f:
                if line.endswith('\n') and '"t_s"' in line:
                    t = json.loads(line).get('t_s', t)
    except (OSError, ValueError):
        pass
    return t


def _truth(path):
    header, states = None, []
    with open(path) as f:
        for line in f:
            if not line.endswith('\n'):
                break
            d = json.loads(line)
            if d.get('type') == 'header':
                header = d
            elif d.get('type') == 'state':
                states.append(d)
    return header, states


def run(args):
    model = models.get(args.model)
    prof = _profile(args)
    target = _target(args, model, prof)
    fan_pct = _fan_pct(args)
    extra = ['--sigma-f', str(args.sigma_f), '--fan-duty-pct', str(fan_pct),
             '--truth-period-s', '5', '--ambient-c', str(_air_c(args))] + _immersion_args(args) \
        + bench_nonces.sim_args(args)
    step = _step(args, prof)
    if step:
        extra += ['--fault', 'ambient:to_c=%g,at=%g' % (_air_c(args) + args.ambient_step_c,
                                                        args.ambient_step_at_s)]
    t_wall0 = time.monotonic()
    with _Sim(args, extra) as sim:
        clock = Clock(args.time_scale)
        rig = Rig.from_ports_file(sim.ports_file, clock=clock)
        src = bench_nonces.NoSource()
        try:
            fast = sorted(rig.family['fast_bauds'])
            baud = args.baud if args.baud in fast else (fast[-1] if fast and not args.baud
                                                         else None)
            rig.start(baud=baud, ticket_bits=8)
            rig.board.set_fan_duty(None, fan_pct)
            src = bench_nonces.start(args, rig, clock)
            io = RigIO(rig, clock, nonces=src.engine)
            t_tune0 = time.monotonic()
            tuner = Tuner(io, prof, target, tick_s=5.0)
            search_t_s = _truth_last_t(sim.truth)     # simulator time the search starts
            t0, done_at, trips, ticks = _drive(args, rig, io, tuner, clock, step, src)
            freq_write_s = io.freq_write_s
            measured = bench_nonces.report(src, io, tuner, rig, time.monotonic() - t_tune0)
        finally:
            src.stop()
            rig.close()
        header, states = _truth(sim.truth)
    if args.keep_truth:
        print('truth file kept: %s' % sim.truth, file=sys.stderr)
    else:
        sim.cleanup()
    wall_s = time.monotonic() - t_wall0
    # Steady state held: truth lines of the last minute of the hold (sim time of the truth file
    # starts at the simulator's start; align on the last line).
    t_end = states[-1]['t_s'] if not step else args.ambient_step_at_s
    before = [s for s in states if s['t_s'] < t_end] if step else states
    held = [s for s in before if s['t_s'] >= t_end - min(args.hold_s, 60.0)]
    wall_w = sum(s['wall_w'] for s in held) / len(held)
    good = sum(s['good_ths'] for s in held) / len(held)
    hottest = max(s['hottest_c'] for s in held)
    prob = O.problem_for(args.model, chips=header['chips'], fan_duty=fan_pct / 100.0,
                         ambient_c=held[-1].get('ambient_c', _air_c(args)),
                         immersion=args.mode == 'immersion')
    st = O.stock(prob)
    out = {'model': args.model, 'seed': args.seed, 'sigma_f': args.sigma_f, 'mode': args.mode,
           'target': target, 'time_scale': args.time_scale, 'fan_duty_pct': fan_pct,
           'ambient_c': prob.ambient_c, 'stock_j_per_th': st['j_per_th'],
           'tuned_j_per_th': wall_w / good, 'held_w': wall_w, 'held_good_ths': good,
           'stock_w': st['wall_w'], 'stock_good_ths': st['good_ths'],
           'tuned_board_mv': tuner.mv[0], 'hottest_c': hottest,
           'converged': done_at is not None,
           'converge_sim_min': (done_at - t0) / 60.0 if done_at is not None else None,
           'wall_s': wall_s, 'freq_write_wall_s': freq_write_s, 'retunes': tuner.retunes,
           'voltage_moves': [list(e) for e in tuner.events],
           'retune_reasons': list(tuner.retune_reasons), 'trips': trips,
           'tuner_ticks': ticks}
    out.update(measured, sim_nonces_dropped=states[-1].get('nonces_dropped'))
    if prof['mode'] == 'thermal':
        # Overshoot during the search: from the tuner's start. Before it the rig hashes at
        # stock while the chains come up, and a time-warped bring-up (2 s of wall time at x30
        # is a minute of physics) heats the dies before any tuner could act; reported apart.
        search = [s for s in before if s['t_s'] >= search_t_s] or before
        out.update(_score_constrained(prob, target, tuner.budget_w, good, search))
        out['bringup_overshoot_c'] = max(s['hottest_c'] for s in before) - target
        out['search_start_sim_s'] = search_t_s
        if step:
            out.update(_score_step(prob, target, tuner.budget_w, states, args))
    elif prof['mode'] == 'heat':
        out.update(_score_heat(prob, target, prof['heat_share'], wall_w, good))
    else:
        out.update(_score_goal(prob, prof['mode'], target, wall_w, good))
    return out


def _drive(args, rig, io, tuner, clock, step, src):
    """Poll the rig as fast as it answers and step the tuner when its wake time comes, as the
    agent's scheduler does (agent/autotune/session.py): on the simulator's clock, the next step
    at the time step() returns, so the tick spacing in simulated time does not depend on how
    long a poll takes on this host (it can only be later, never earlier, than asked). Runs until
    done + hold (or the step's window ends, or the time limit).
    Returns (t0, done_at, safety trips: times RigIO.safety_ok paused the tuner, tick spacing:
    steps and the simulated seconds between them)."""
    t0 = clock.monotonic()
    done_at = None
    last_print = -1e9
    limit_s = args.max_sim_min * 60.0
    trips = 0
    wake = t0
    stepped = []
    while True:
        rig.poll()
        src.tick(clock.monotonic())
        now = clock.monotonic()
        if now >= wake:
            was = tuner.stage
            stepped.append(now)
            wake = next_wake(tuner.step(now), now, tuner.tick_s)
            if tuner.stage == 'paused' and was != 'paused':
                trips += 1      # RigIO.safety_ok said no: power limit or stop temperature
            if tuner.stage == 'done' and done_at is None:
                done_at = now
        if not args.quiet and time.monotonic() - last_print > 5.0:
            last_print = time.monotonic()
            _progress_line(tuner, io, now - t0)
        if step:
            # the step is timed on the simulator's clock, which started before ours
            if now - t0 >= args.ambient_step_at_s + args.recover_window_s:
                break
        elif done_at is not None and now - done_at >= args.hold_s:
            break
        elif now - t0 > limit_s + args.hold_s:
            break
    return t0, done_at, trips, tick_spacing(stepped)


def tick_spacing(times):
    """Simulated seconds between tuner steps: count, min, median, max."""
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    if not gaps:
        return {'steps': len(times), 'min_s': None, 'median_s': None, 'max_s': None}
    return {'steps': len(times), 'min_s': gaps[0], 'median_s': gaps[len(gaps) // 2],
            'max_s': gaps[-1]}


def _progress_line(tuner, io, t_s):
    s = tuner.get_status()
    print('[%6.0f s sim] %-7s %5.1f%%  %s mV  P %s W  G %s TH/s  settled %s%%'
          % (t_s, s['stage'], s['progress_pct'], io.voltage_mv()[0], _f(s['power_w'], 0),
             _f(s['good_ths'], 2), s['settled_pct']), file=sys.stderr, flush=True)


def _score_goal(prob, mode, target, wall_w, good):
    """power / hashrate / efficiency: J/TH against the oracle at the same goal."""
    orc = O.optimise(prob, mode, target)
    tuned_j = wall_w / good
    # Also the oracle at exactly what the tuner held (a budget it under-used is not a gain).
    orc_same = O.optimise(prob, 'power', wall_w) if mode == 'power' else \
        O.optimise(prob, 'hashrate', good)
    return {'oracle_j_per_th': orc['j_per_th'] if orc else None,
            'gap_pct': 100.0 * (tuned_j / orc['j_per_th'] - 1.0) if orc else None,
            'power_vs_target_pct': 100.0 * (wall_w / target - 1.0) if mode == 'power' else None,
            'hashrate_vs_target_pct': 100.0 * (good / target - 1.0) if mode != 'power' else None,
            'oracle_w': orc['wall_w'] if orc else None,
            'oracle_good_ths': orc['good_ths'] if orc else None,
            'good_gap_pct': 100.0 * (good / orc['good_ths'] - 1.0) if orc else None,
            'gap_same_held_pct': 100.0 * (tuned_j / orc_same['j_per_th'] - 1.0)
            if orc_same else None,
            'oracle_board_mv': orc['board_mv'][0] if orc else None}


def _score_heat(prob, budget_w, share, wall_w, good):
    """heat: a heat budget is a power target at wall = budget / heat_share (docs/autotune.md,
    Heat budget): J/TH against the oracle's power-mode solve at that wall power; the heat held
    (truth wall power x share) against the budget."""
    wall_target_w = maths.wall_for_heat_w(budget_w, share)
    out = _score_goal(prob, 'power', wall_target_w, wall_w, good)
    out.update(heat_budget_w=budget_w, heat_share=share, wall_target_w=wall_target_w,
               held_heat_w=wall_w * share,
               heat_vs_budget_pct=100.0 * (wall_w * share / budget_w - 1.0))
    return out


def _score_constrained(prob, ceiling_c, cap_w, good, states):
    """thermal / quiet: good TH/s against the oracle's most hashes under the same die ceiling,
    power cap (the tuner's: the rig's power limit less the margin), fan duty and ambient;
    gap_pct = tuned over oracle TH/s - 1 (negative: below the oracle).
    Worst overshoot: hottest die over the ceiling on any of the given truth lines (the
    search's: from the tuner's start)."""
    prob.hot_c = ceiling_c
    orc = O.optimise_constrained(prob, power_w=cap_w)
    over = max(s['hottest_c'] for s in states) - ceiling_c
    return {'max_die_c': ceiling_c, 'worst_overshoot_c': over, 'power_cap_w': cap_w,
            'oracle_good_ths': orc['good_ths'] if orc else None,
            'oracle_w': orc['wall_w'] if orc else None,
            'oracle_j_per_th': orc['j_per_th'] if orc else None,
            'oracle_hottest_c': orc['hottest_c'] if orc else None,
            'gap_pct': 100.0 * (good / orc['good_ths'] - 1.0) if orc else None,
            'good_gap_pct': 100.0 * (good / orc['good_ths'] - 1.0) if orc else None,
            'gap_same_held_pct': None, 'power_vs_target_pct': None,
            'hashrate_vs_target_pct': None,
            'oracle_board_mv': orc['board_mv'][0] if orc else None}


def _step(args, prof):
    return prof['mode'] == 'thermal' and args.ambient_step_c != 0.0


RECOVER_BAND = 0.01        # back within 1 % of the new optimum ...
RECOVER_OVER_C = 2.0       # ... with no die more than 2 C over the ceiling
RECOVER_AVG_S = 30.0       # good TH/s averaged over this long (truth lines every 5 s)


def _score_step(prob, ceiling_c, cap_w, states, args):
    """After the ambient step: the oracle at the new ambient (same ceiling, cap, duty), the
    simulated seconds until the rig is back within RECOVER_BAND of it (30 s average of the
    truth's good TH/s, no die over the ceiling by more than RECOVER_OVER_C) and stays there to
    the end of the window; the worst overshoot after the step; the gap over the last minute."""
    t_step = args.ambient_step_at_s
    after = [s for s in states if s['t_s'] >= t_step]
    prob.ambient_c = _air_c(args) + args.ambient_step_c
    prob.hot_c = ceiling_c
    orc = O.optimise_constrained(prob, power_w=cap_w)
    out = {'step_c': args.ambient_step_c, 'step_oracle_good_ths': orc['good_ths'] if orc else None,
           'step_worst_overshoot_c': max(s['hottest_c'] for s in after) - ceiling_c
           if after else None, 'recover_sim_min': None, 'step_gap_pct': None}
    if not after or orc is None:
        return out
    n = max(1, int(RECOVER_AVG_S / 5.0))
    ok_since = None
    for k in range(len(after)):
        win = after[max(0, k - n + 1):k + 1]
        g = sum(s['good_ths'] for s in win) / len(win)
        ok = g >= orc['good_ths'] * (1.0 - RECOVER_BAND) and \
            after[k]['hottest_c'] <= ceiling_c + RECOVER_OVER_C
        ok_since = (ok_since if ok_since is not None else after[k]['t_s']) if ok else None
    if ok_since is not None:
        out['recover_sim_min'] = (ok_since - t_step) / 60.0
    last = [s for s in after if s['t_s'] >= after[-1]['t_s'] - 60.0]
    out['step_gap_pct'] = 100.0 * (sum(s['good_ths'] for s in last) / len(last)
                                   / orc['good_ths'] - 1.0)
    return out


def _f(x, nd):
    return '-' if x is None else ('%.*f' % (nd, x))


class _Sim:
    """SimProcess (agent/bench.py) plus a truth file in its temporary directory."""

    def __init__(self, args, extra):
        from agent.bench import SimProcess
        import tempfile
        self.dir = tempfile.mkdtemp(prefix='hashpilot-autotune-')
        self.truth = os.path.join(self.dir, 'truth.jsonl')
        self.sim = SimProcess(args.model, args.seed, args.time_scale,
                              list(extra) + ['--truth', self.truth])
        self.ports_file = self.sim.ports_file

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sim.stop()

    def cleanup(self):
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)


def table(r):
    if 'max_die_c' in r:
        return _table_constrained(r)
    rows = [('model', r['model']), ('seed / sigma_f', '%d / %.3f' % (r['seed'], r['sigma_f'])),
            ('mode / target', '%s / %.1f' % (r['mode'], r['target'])),
            ('stock J/TH', _f(r['stock_j_per_th'], 3)), ('tuned J/TH', _f(r['tuned_j_per_th'], 3)),
            ('oracle J/TH', _f(r['oracle_j_per_th'], 3)), ('gap to oracle %', _f(r['gap_pct'], 2)),
            ('gap at the held W/TH %', _f(r['gap_same_held_pct'], 2)),
            ('held W (truth)', _f(r['held_w'], 1)),
            ('power vs target %', _f(r['power_vs_target_pct'], 2)),
            ('hashrate vs target %', _f(r['hashrate_vs_target_pct'], 2)),
            ('good TH/s (vs oracle %)', '%s (%s)' % (_f(r['held_good_ths'], 2),
                                                     _f(r['good_gap_pct'], 2))),
            ('tuned / oracle board mV', '%s / %s' % (r['tuned_board_mv'], r['oracle_board_mv'])),
            ('hottest die C', _f(r['hottest_c'], 1)),
            ('converged (sim min)', _f(r['converge_sim_min'], 1) if r['converged'] else 'NO'),
            ('wall seconds', _f(r['wall_s'], 0))]
    if 'heat_budget_w' in r:
        rows[2:3] = [('mode / heat budget', 'heat / %.1f W, share %.2f (wall %.1f W)' % (
            r['heat_budget_w'], r['heat_share'], r['wall_target_w'])),
            ('heat held W (budget %)', '%s (%s)' % (_f(r['held_heat_w'], 1),
                                                      _f(r['heat_vs_budget_pct'], 2)))]
    return '\n'.join('%-24s %s' % kv for kv in rows)


def _table_constrained(r):
    rows = [('model', r['model']), ('seed / sigma_f', '%d / %.3f' % (r['seed'], r['sigma_f'])),
            ('mode', r['mode']), ('die ceiling C', _f(r['max_die_c'], 1)),
            ('fan duty % / ambient C', '%s / %s' % (_f(r['fan_duty_pct'], 0),
                                                     _f(r['ambient_c'], 1))),
            ('tuned good TH/s', _f(r['held_good_ths'], 3)),
            ('oracle good TH/s', _f(r['oracle_good_ths'], 3)),
            ('gap to oracle %', _f(r['gap_pct'], 2)),
            ('tuned / oracle J/TH', '%s / %s' % (_f(r['tuned_j_per_th'], 3),
                                                 _f(r['oracle_j_per_th'], 3))),
            ('tuned / oracle board mV', '%s / %s' % (r['tuned_board_mv'], r['oracle_board_mv'])),
            ('hottest die held C', _f(r['hottest_c'], 1)),
            ('worst overshoot C', _f(r['worst_overshoot_c'], 2)),
            ('converged (sim min)', _f(r['converge_sim_min'], 1) if r['converged'] else 'NO'),
            ('power cap W', _f(r['power_cap_w'], 0)),
            ('safety trips', str(r['trips']))]
    if 'step_c' in r:
        rows += [('ambient step C', _f(r['step_c'], 1)),
                 ('new oracle good TH/s', _f(r['step_oracle_good_ths'], 3)),
                 ('recovered (sim min)', _f(r['recover_sim_min'], 1)
                  if r['recover_sim_min'] is not None else 'NO'),
                 ('gap after the step %', _f(r['step_gap_pct'], 2)),
                 ('overshoot after step C', _f(r['step_worst_overshoot_c'], 2))]
    rows.append(('wall seconds', _f(r['wall_s'], 0)))
    return '\n'.join('%-24s %s' % kv for kv in rows)


def _heat_refused(args):
    """--mode heat: the profile and share must validate, and the wall power the budget needs
    must be inside the rig's power range (as the agent's set_heat_budget: 20 % of the nameplate
    to the power limit)."""
    try:
        prof = _profile(args)
    except PR.ConfigError as e:
        print('hashpilot bench autotune: %s' % e, file=sys.stderr)
        return True
    model = models.get(args.model)
    wall_w = maths.wall_for_heat_w(_target(args, model, prof), prof['heat_share'])
    lo_w, hi_w = PR.power_range_w(model)
    if not lo_w <= wall_w <= hi_w:
        print('hashpilot bench autotune: heat budget needs %.1f W at the wall, outside '
              '%.1f..%.1f W for %s' % (wall_w, lo_w, hi_w, model['name']), file=sys.stderr)
        return True
    return False


def main(argv=None):
    p = add_arguments(argparse.ArgumentParser(prog='hashpilot bench autotune',
                                              description=summary(__doc__)))
    return run_cli(p.parse_args(argv))


def run_cli(args):
    """Entry from `hashpilot bench autotune` (agent/bench.py) and from main()."""
    if args.mode == 'power' and args.target_w is not None and args.target_w <= 0:
        print('hashpilot bench autotune: --target-w must be > 0', file=sys.stderr)
        return 2
    if args.max_die_c is not None and not 30.0 <= args.max_die_c <= 120.0:
        print('hashpilot bench autotune: --max-die-c must be within 30..120', file=sys.stderr)
        return 2
    if not 5.0 <= args.max_fan_pct <= 100.0:
        print('hashpilot bench autotune: --max-fan-pct must be within 5..100', file=sys.stderr)
        return 2
    if not -40.0 <= args.ambient_c <= 80.0 or not -40.0 <= args.coolant_c <= 80.0:
        print('hashpilot bench autotune: --ambient-c/--coolant-c must be within -40..80',
              file=sys.stderr)
        return 2
    if args.time_scale <= 0:
        print('hashpilot bench autotune: --time-scale must be > 0', file=sys.stderr)
        return 2
    if args.mode != 'heat' and (args.heat_budget_w is not None or args.heat_share is not None):
        print('hashpilot bench autotune: --heat-budget-w/--heat-share need --mode heat',
              file=sys.stderr)
        return 2
    if args.mode == 'heat' and _heat_refused(args):
        return 2
    if args.table:
        from agent import bench_autotune_table
        return bench_autotune_table.run_table(args, run)
    r = run(args)
    if args.json:
        print(json.dumps(r, indent=1, sort_keys=True))
    else:
        print(table(r))
    return 0
