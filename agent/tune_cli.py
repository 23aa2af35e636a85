"""`hashpilot tune`: run the autotuner from the command line (progress bar, result saved per
board), `hashpilot tune report FILE|DIR [-o OUT.png]`, `hashpilot tune --list`.

Uses the agent's config file (agent/config.py): rig section (ports file or chain/board URLs),
state dir / tuner.results_dir, fan manual duty. The agent itself runs the same tuner on its
control thread; this command is for bench work and first tunes.
"""

import argparse
import os
import sys
import time

from agent import config as C
from agent.autotune import maths
from agent.autotune import profile as PR
from agent.autotune import store
from agent.autotune.session import next_wake


def _bar(frac, width=30):
    n = int(round(frac * width))
    return '[' + '#' * n + '.' * (width - n) + ']'


def _eta(s):
    if s is None:
        return '--:--'
    s = int(s)
    return '%d:%02d' % (s // 60, s % 60) if s < 3600 else '%dh%02d' % (s // 3600, s % 3600 // 60)


def progress_line(st, wall_elapsed_s=None, time_scale=1.0):
    """One progress line. The ETA is on the clock the user watches (wall time since the
    start); on a time-warped simulator the tuner's own (simulated) elapsed time is labelled."""
    def f(v, nd):
        return '-' if v is None else '%.*f' % (nd, v)
    eta = st['eta_s']
    if wall_elapsed_s is not None:
        eta = None if st['stage'] == 'done' else maths.eta_s(st['progress_pct'] / 100.0,
                                                             wall_elapsed_s)
    sim = ''
    if time_scale != 1.0 and st.get('elapsed_s') is not None:
        sim = '  (simulated %s at x%g)' % (_eta(st['elapsed_s']), time_scale)
    return '%s %5.1f%% %-7s ETA %s  %s W  %s TH/s  %s J/TH  %s mV%s' % (
        _bar(st['progress_pct'] / 100.0), st['progress_pct'], st['stage'], _eta(eta),
        f(st['power_w'], 0), f(st['good_ths'], 2), f(st['j_per_th'], 3),
        (st['board_mv'] or ['-'])[0], sim)


def _open_rig(cfg):
    from hal.clock import Clock
    from hal.rig import Rig
    r = cfg['rig']
    if r['ports_file']:
        import json
        with open(r['ports_file']) as f:
            ports = json.load(f)
        ts = r['time_scale'] or float(ports.get('time_scale', 1.0))
        clock = Clock(ts)
        rig = Rig.from_ports_file(r['ports_file'], clock=clock, address_rule=r['address_rule'])
    else:
        if not r['model'] or not r['chains']:
            raise C.ConfigError('rig.model and rig.chains (or rig.ports_file) are needed')
        clock = Clock(r['time_scale'] or 1.0)
        rig = Rig(r['model'], r['chains'], r['board'] or None, clock=clock,
                  address_rule=r['address_rule'])
    return rig, clock


def run_tune(args):
    from agent.autotune.halio import RigIO
    from agent.autotune.tuner import Tuner
    try:
        cfg = C.from_args(args)
        prof = PR.load(args.profile)
    except C.ConfigError as e:
        print('hashpilot tune: %s' % e, file=sys.stderr)
        return 2
    results_dir = cfg['tuner']['results_dir'] or os.path.join(cfg['state']['state_dir'], 'tune')
    try:
        rig, clock = _open_rig(cfg)
    except (OSError, ValueError, KeyError, C.ConfigError) as e:
        print('hashpilot tune: cannot open the rig: %s' % e, file=sys.stderr)
        return 2
    tty = sys.stderr.isatty()
    try:
        baud = cfg['rig']['baud']
        rig.start(freq_mhz=cfg['rig']['freq_mhz'] or None,
                  baud=baud if baud in rig.family['fast_bauds'] else None)
        duty = args.fan_duty_pct if args.fan_duty_pct is not None else cfg['fan']['manual_duty_pct']
        rig.board.set_fan_duty(None, duty)
        io = RigIO(rig, clock, power_limit_w=cfg['safety']['power_limit_w'] or None)
        target = PR.resolve_target(prof, rig.model)
        saved = None if args.no_reuse else store.load_saved(results_dir, io.board_ids())
        tuner = Tuner(io, prof, target, saved=saved)
        print('tuning %s: profile %s, %s target %.1f %s%s' % (
            rig.model['name'], prof['name'], prof['mode'], target, PR.target_unit(prof['mode']),
            ' (reusing saved result)' if saved else ''), file=sys.stderr)
        last = 0.0
        limit = prof['time_budget_s'] * 1.5 + prof['verify_s']
        t0 = clock.monotonic()
        wall0 = time.monotonic()

        def line():
            return progress_line(tuner.get_status(), time.monotonic() - wall0, clock.time_scale)

        wake = t0
        while tuner.stage != 'done':
            rig.poll()
            now = clock.monotonic()
            if now >= wake:         # the tuner's own cadence (tick_s), as the agent's scheduler
                wake = next_wake(tuner.step(now), now, tuner.tick_s)
            if time.monotonic() - last > (0.5 if tty else 10.0):
                last = time.monotonic()
                text = line()
                sys.stderr.write(('\r' + text) if tty else (text + '\n'))
                sys.stderr.flush()
            if now - t0 > limit:
                print('\nhashpilot tune: no convergence within %.0f s' % limit, file=sys.stderr)
                return 1
        sys.stderr.write(('\r' if tty else '') + line() + '\n')
        res = tuner.result()
        paths = store.save(results_dir, res)
        scale = clock.time_scale
        took = '%.0f s' % res['tune_s'] if scale == 1.0 else \
            '%.0f s simulated (%.0f s here at x%g)' % (res['tune_s'], time.monotonic() - wall0, scale)
        print('tuned: %.1f W, %.2f TH/s, %.3f J/TH in %s; saved %s' % (
            res['power_w'], res['good_ths'], res['j_per_th'], took, ', '.join(paths)))
        return 0
    finally:
        rig.close()


def run_report(argv):
    p = argparse.ArgumentParser(prog='hashpilot tune report',
                                description='tune result (file or results dir) -> PNG')
    p.add_argument('file')
    p.add_argument('-o', '--output', default=None, help='PNG path (default FILE.png)')
    a = p.parse_args(argv)
    # imported by its full name so the firmware binary, which leaves it out, says so (agent/cli.py)
    from agent.autotune.report import load_records, render
    try:
        recs = load_records(a.file)
    except (OSError, ValueError, KeyError) as e:
        print('hashpilot tune report: %s' % e, file=sys.stderr)
        return 2
    out = a.output or (a.file.rstrip('/') + '.png')
    render(recs, out)
    print(out)
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog='hashpilot tune',
                                description='autotune per-chip frequency and voltage; '
                                            '`hashpilot tune report FILE` renders a PNG')
    C.add_flags(p)
    p.add_argument('--profile', default='balanced',
                   help='shipped profile (%s) or a profile file' % ', '.join(PR.shipped()))
    p.add_argument('--fan-duty-pct', type=float, default=None,
                   help='fans held at this duty while tuning (default: fan.manual_duty_pct)')
    p.add_argument('--no-reuse', action='store_true', help='ignore saved results')
    p.add_argument('--list', action='store_true', help='list shipped profiles')
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == 'report':
        return run_report(argv[1:])
    args = build_parser().parse_args(argv)
    if args.list:
        for name in PR.shipped():
            prof = PR.load(name)
            print('%-12s %-10s %s' % (name, prof['mode'], prof['description']))
        return 0
    if args.fan_duty_pct is not None and not 0 <= args.fan_duty_pct <= 100:
        print('hashpilot tune: --fan-duty-pct must be within 0..100', file=sys.stderr)
        return 2
    return run_tune(args)
