"""`hashpilot bench autotune --table`: the thermal/quiet matrix through the simulator, one
`bench autotune` run per row (models x modes x seeds x sigma_f), progress on stderr, the table
on stdout (or JSON with --json).

Scenarios (where heat or noise binds, from the issue): thermal is a die ceiling in a warm room
(S21/S19JPRO 75 C at 35 C ambient, GAMMA 72 C at 25 C; fans held at 70 %); quiet is the fans
capped (S21/S19JPRO 60 % in a 40 C room, GAMMA 50 % at 25 C) under the default ceiling (hot
limit less the margin). Every row takes the ambient step given by --ambient-step-c (the table's
default +10 C) at --ambient-step-at-s and reports the recovery.
"""

import copy
import json
import os
import sys
import time

SCENARIOS = {
    # (model, mode): ambient C, die ceiling C (None = hot limit less margin), fan duty / cap %
    ('S21', 'thermal'): (35.0, 75.0, 70.0),
    ('S19JPRO', 'thermal'): (35.0, 75.0, 70.0),
    ('GAMMA', 'thermal'): (25.0, 72.0, 70.0),
    ('S21', 'quiet'): (40.0, None, 60.0),
    ('S19JPRO', 'quiet'): (40.0, None, 60.0),
    ('GAMMA', 'quiet'): (25.0, None, 50.0),
}
TABLE_STEP_C = 10.0

COLUMNS = ('model', 'seed', 'sigma_f', 'mode', 'constraint', 'tuned TH/s', 'oracle TH/s',
           'gap %', 'worst over C', 'time min', 'trips', 'step recover min', 'step gap %',
           'step over C')


def _list(text, cast):
    return [cast(x.strip()) for x in text.split(',') if x.strip()]


def rows_of(args):
    """The matrix as per-row argument namespaces (copies of args)."""
    out = []
    for model in _list(args.table_models, str.upper):
        for mode in _list(args.table_modes, str.lower):
            if (model, mode) not in SCENARIOS:
                raise ValueError('no table scenario for %s %s (known: %s)' % (
                    model, mode, ', '.join('%s %s' % k for k in sorted(SCENARIOS))))
            amb, ceil, fan = SCENARIOS[(model, mode)]
            for seed in _list(args.table_seeds, int):
                for sigma in _list(args.table_sigmas, float):
                    a = copy.copy(args)
                    a.table = False
                    a.model, a.mode, a.seed, a.sigma_f = model, mode, seed, sigma
                    a.ambient_c, a.max_die_c = amb, ceil
                    if mode == 'quiet':
                        a.max_fan_pct = fan
                    else:
                        a.fan_duty_pct = fan
                    a.quiet = True
                    a.json = False
                    out.append(a)
    return out


def constraint(r):
    if r['mode'] == 'quiet':
        what = 'fan <= %.0f %%, die <= %.0f C' % (r['fan_duty_pct'], r['max_die_c'])
    else:
        what = 'die <= %.0f C, fan %.0f %%' % (r['max_die_c'], r['fan_duty_pct'])
    return '%s, %.0f C room, <= %.0f W' % (what, r['ambient_c'], r['power_cap_w'])


def _f(x, nd):
    return '-' if x is None else '%.*f' % (nd, x)


def cells(r):
    return (r['model'], str(r['seed']), '%.2f' % r['sigma_f'], r['mode'], constraint(r),
            _f(r['held_good_ths'], 3), _f(r['oracle_good_ths'], 3), _f(r['gap_pct'], 2),
            _f(r['worst_overshoot_c'], 2),
            _f(r['converge_sim_min'], 1) if r['converged'] else 'NO', str(r['trips']),
            _f(r.get('recover_sim_min'), 1) if r.get('step_c') else '-',
            _f(r.get('step_gap_pct'), 2), _f(r.get('step_worst_overshoot_c'), 2))


def markdown(results):
    lines = ['| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
    for r in results:
        lines.append('| ' + ' | '.join(cells(r)) + ' |')
    return '\n'.join(lines)


def plant_row(a, tick_s=5.0):
    """One row on the in-process plant (agent/autotune/plant.py: the same physics, no ptys, no
    pacing; cold start and the rig's limits as RigIO's, truth = the plant's own state), scored
    like bench_autotune.run scores the simulator's truth file. For a machine too loaded to
    pace the simulator (the tuner then sees 20-30 simulated seconds per poll)."""
    from hal import models
    from hal.sim import oracle as O
    from agent.autotune import profile as PR
    from agent.autotune.plant import PlantIO
    from agent.autotune.tuner import Tuner
    t_wall0 = time.monotonic()
    model = models.get(a.model)
    prof = PR.validate({'mode': 'thermal'})
    ceiling = a.max_die_c or PR.resolve_target(prof, model)
    fan = a.max_fan_pct if a.mode == 'quiet' else a.fan_duty_pct
    io = PlantIO(a.model, seed=a.seed, sigma_f=a.sigma_f, fan_duty=fan / 100.0,
                 ambient_c=a.ambient_c, rig_limits=True, cold_start=True)
    tuner = Tuner(io, prof, ceiling, tick_s=tick_s)
    lines, done_at, trips = [], None, 0
    while io.t_s < a.ambient_step_at_s + a.recover_window_s:
        if io.t_s >= a.ambient_step_at_s:
            io.ambient_c = a.ambient_c + a.ambient_step_c
        was = tuner.stage
        tuner.step(io.t_s)
        trips += tuner.stage == 'paused' and was != 'paused'
        io.advance(tick_s)
        if tuner.stage == 'done' and done_at is None:
            done_at = io.t_s
        lines.append({'t_s': io.t_s, 'good_ths': io.good_ths(), 'wall_w': io.wall_w(),
                      'hottest_c': max(max(b) for b in io.temps)})
    before = [s for s in lines if s['t_s'] < a.ambient_step_at_s]
    held = [s for s in before if s['t_s'] >= a.ambient_step_at_s - 60.0]
    good = sum(s['good_ths'] for s in held) / len(held)
    prob = O.problem_for(a.model, seed=a.seed, sigma_f=a.sigma_f, fan_duty=fan / 100.0,
                         ambient_c=a.ambient_c)
    from agent.bench_autotune import _score_constrained, _score_step
    out = {'model': a.model, 'seed': a.seed, 'sigma_f': a.sigma_f, 'mode': a.mode,
           'fan_duty_pct': fan, 'ambient_c': a.ambient_c, 'held_good_ths': good,
           'converged': done_at is not None and done_at < a.ambient_step_at_s,
           'converge_sim_min': done_at / 60.0 if done_at is not None else None,
           'trips': trips, 'backend': 'plant', 'voltage_moves': [list(e) for e in tuner.events]}
    out.update(_score_constrained(prob, ceiling, tuner.budget_w, good, before))
    out.update(_score_step(prob, ceiling, tuner.budget_w, lines, a))
    out['wall_s'] = time.monotonic() - t_wall0
    return out


def run_table(args, run):
    """Run every row with `run` (bench_autotune.run, or plant_row with --table-backend plant),
    print progress and the table."""
    if args.table_backend == 'plant':
        run = plant_row
    if args.ambient_step_c == 0.0:
        args.ambient_step_c = TABLE_STEP_C
    try:
        rows = rows_of(args)
    except ValueError as e:
        print('hashpilot bench autotune: %s' % e, file=sys.stderr)
        return 2
    load0 = os.getloadavg()
    t0 = time.monotonic()
    results = []
    for k, a in enumerate(rows):
        print('[%d/%d %4.0f s] %s %s seed %d sigma_f %.2f ...' % (
            k + 1, len(rows), time.monotonic() - t0, a.model, a.mode, a.seed, a.sigma_f),
            file=sys.stderr, flush=True)
        r = run(a)
        results.append(r)
        print('    gap %s %%, worst over %s C, %s sim min, trips %d, recovered in %s sim min '
              '(%.0f s wall)' % (_f(r['gap_pct'], 2), _f(r['worst_overshoot_c'], 2),
                                 _f(r['converge_sim_min'], 1), r['trips'],
                                 _f(r.get('recover_sim_min'), 1), r['wall_s']),
              file=sys.stderr, flush=True)
    wall = time.monotonic() - t0
    load1 = os.getloadavg()
    if args.json:
        print(json.dumps({'rows': results, 'wall_s': wall, 'load_start': load0,
                          'backend': args.table_backend,
                          'load_end': load1}, indent=1, sort_keys=True))
        return 0
    print(markdown(results))
    how = 'plant' if args.table_backend == 'plant' else 'sim, time scale %g' % args.time_scale
    print('\n%d rows (%s) in %.0f s wall; load average %.2f %.2f %.2f at the start, '
          '%.2f %.2f %.2f at the end' % ((len(results), how, wall) + load0 + load1))
    return 0
