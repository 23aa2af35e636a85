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


def run_table(args, run):
    """Run every row with `run` (bench_autotune.run), print progress and the table."""
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
                          'load_end': load1}, indent=1, sort_keys=True))
        return 0
    print(markdown(results))
    print('\n%d rows in %.0f s wall (time scale %g); load average %.2f %.2f %.2f at the start, '
          '%.2f %.2f %.2f at the end' % ((len(results), wall, args.time_scale) + load0 + load1))
    return 0
