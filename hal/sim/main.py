"""`hashpilot sim`: run the hashboard simulator on pseudo-terminals until SIGTERM/SIGINT.

One thread: a select() loop over every pty master plus timers (physics step, truth output).
"""

import argparse
import json
import os
import random
import select
import signal
import sys
import time

from hal import models
from hal.sim import physics as P
from hal.sim.boardctl import BoardServer
from hal.sim.faults import FaultError, FaultSet, parse as parse_fault, validate as validate_fault
from hal.sim.faults import parse_kv
from hal.sim.rig import SimRig
from hal.sim.truth import TruthWriter
from hal.sim.uart import ChainPort
from hal.sim.work import DEFAULT_CHECK_BITS as SIM_CHECK_BITS


def _positive(kind):
    def conv(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError('%r is not a number' % (s,))
        if not 0 < v < float('inf'):
            raise argparse.ArgumentTypeError('must be > 0 and finite, got %r' % (s,))
        return v
    return conv


def _nonneg(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a number' % (s,))
    if not 0 <= v < float('inf'):
        raise argparse.ArgumentTypeError('must be >= 0 and finite, got %r' % (s,))
    return v


def _ambient(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a number' % (s,))
    if not -40.0 <= v <= 80.0:
        raise argparse.ArgumentTypeError('ambient must be within -40..80 C, got %r' % (s,))
    return v


def _pct(s):
    v = _nonneg(s)
    if v > 100:
        raise argparse.ArgumentTypeError('must be within 0..100, got %r' % (s,))
    return v


def build_parser():
    p = argparse.ArgumentParser(prog='hashpilot sim',
                                description='Simulated hashboards (BM13xx chains) on ptys.')
    p.add_argument('--model', required=True, type=str.upper, choices=sorted(models.MODELS))
    p.add_argument('--seed', type=int, default=1, help='silicon population seed (default 1)')
    p.add_argument('--sigma-f', type=_nonneg, default=P.SIGMA_F, help='chip speed spread')
    p.add_argument('--sigma-l', type=_nonneg, default=P.SIGMA_L, help='chip leakage spread')
    p.add_argument('--ambient-c', type=_ambient, default=P.AMBIENT_C, help='ambient air (25)')
    p.add_argument('--time-scale', type=_positive(float), default=1.0,
                   help='physics runs K x faster than wall time (serial pacing stays real)')
    p.add_argument('--truth', metavar='FILE', help='append hidden state as JSON lines')
    p.add_argument('--truth-period-s', type=_positive(float), default=1.0,
                   help='simulated seconds between truth lines (default 1)')
    p.add_argument('--fault', action='append', default=[], metavar='SPEC',
                   help='e.g. chip-dead:board=0,chip=5,at=30 (repeatable; see docs/simulator.md)')
    p.add_argument('--ports-file', metavar='FILE', help='write the pty paths here as JSON')
    p.add_argument('--work-check-bits', type=int, default=SIM_CHECK_BITS, choices=range(1, 25),
                   metavar='N', help='leading zero bits of the simulated chips\' nonce solutions '
                   '(reduced difficulty, default %d; see docs/simulator.md "Work")' % SIM_CHECK_BITS)
    p.add_argument('--fan-duty-pct', type=_pct, default=100.0, help='initial fan duty (100)')
    p.add_argument('--immersion', action='store_true',
                   help='boards in coolant at --ambient-c: conductance 4 x g_max, fans never '
                        'turn, no fan power (spec "Noise and immersion")')
    p.add_argument('--warm', action='store_true',
                   help='chips already brought up at f_nom by an earlier host (reset baud); '
                        'default: freshly reset chips that hash only once a host sets them up')
    p.add_argument('--chip', action='append', default=[], metavar='SPEC',
                   help='per-chip silicon override, e.g. board=0,chip=3,speed=0.8[,leak=2]'
                        '[,cap=1.1][,dead=1] (repeatable)')
    p.add_argument('--lot', action='append', default=[], metavar='SPEC',
                   help='a second silicon lot: fraction=0.3,speed=0.92[,leak=1.5] (repeatable)')
    return p


CHIP_KEYS = {'board': (int, True, None), 'chip': (int, True, None), 'speed': (float, False, None),
             'leak': (float, False, None), 'cap': (float, False, None), 'dead': (int, False, None)}
LOT_KEYS = {'fraction': (float, True, None), 'speed': (float, True, None),
            'leak': (float, False, 1.0)}


def parse_chip(spec, model):
    o = parse_kv('--chip', spec, CHIP_KEYS)
    if not 0 <= o['board'] < model['boards'] or not 0 <= o['chip'] < model['chips_per_board']:
        raise FaultError('--chip %r: board/chip outside the model' % spec)
    for k in ('speed', 'leak', 'cap'):
        if o[k] is not None and not o[k] > 0:
            raise FaultError('--chip %r: %s must be > 0' % (spec, k))
    out = {'board': o['board'], 'chip': o['chip']}
    for k in ('speed', 'leak', 'cap'):
        if o[k] is not None:
            out[k] = o[k]
    if o['dead'] is not None:
        out['dead'] = bool(o['dead'])
    return out


def parse_lot(spec):
    o = parse_kv('--lot', spec, LOT_KEYS)
    if not 0 <= o['fraction'] <= 1 or not o['speed'] > 0 or not o['leak'] > 0:
        raise FaultError('--lot %r: fraction within 0..1, speed and leak > 0' % spec)
    return o


def write_ports_file(path, info):
    tmp = '%s.tmp%d' % (path, os.getpid())
    with open(tmp, 'w') as f:
        json.dump(info, f)
        f.write('\n')
    os.replace(tmp, path)


class Simulator:
    def __init__(self, args, faults):
        model = models.get(args.model)
        self.args = args
        self.time_scale = args.time_scale
        self.rig = SimRig(model, seed=args.seed, sigma_f=args.sigma_f, sigma_l=args.sigma_l,
                          ambient_c=args.ambient_c, fan_duty_pct=args.fan_duty_pct,
                          overrides=args.chip_overrides, lots=args.lots,
                          immersion=args.immersion)
        if args.warm:
            self.rig.warm_start()
        self.faults = FaultSet(faults, self.rig, args.seed)
        self.wall0 = time.monotonic()
        for ch in self.rig.chains:
            ch.work.check_bits = args.work_check_bits
        self.ports = [ChainPort(ch, self.sim_time, self.faults.corruptor(i))
                      for i, ch in enumerate(self.rig.chains)]
        self.board = BoardServer(self.rig, random.Random(args.seed * 13 + 3), self.sim_time)
        self.truth = None
        if args.truth:
            self.truth = TruthWriter(args.truth, self.rig, args.truth_period_s, self.time_scale,
                                     faults)
            self.truth.nonces_dropped = lambda: sum(p.nonces_dropped for p in self.ports)
        # physics step: ~100 ms wall, but never more than ~1 simulated second
        self.step_wall_s = max(0.01, min(0.1, 1.0 / self.time_scale))
        self.running = True

    def sim_time(self, wall):
        return (wall - self.wall0) * self.time_scale

    def info(self):
        return {'model': self.rig.model['name'], 'chains': [p.pty.path for p in self.ports],
                'board': self.board.pty.path, 'baud': 115200, 'time_scale': self.time_scale,
                'pid': os.getpid(), 'seed': self.args.seed,
                'work_check_bits': self.args.work_check_bits}

    def step(self, now):
        t_s = self.sim_time(now)
        self.faults.step(t_s)
        dt = self.rig.step(t_s)
        if dt > 0:
            for port in self.ports:
                port.queue_nonces(dt, now)
        if self.truth is not None:
            self.truth.maybe_write(t_s)

    def run(self):
        by_fd = {p.pty.master: p for p in self.ports}
        by_fd[self.board.pty.master] = self.board
        endpoints = list(by_fd.values())
        next_step = time.monotonic()
        while self.running:
            now = time.monotonic()
            if now >= next_step:
                self.step(now)
                next_step += self.step_wall_s
                if next_step < now:
                    next_step = now + self.step_wall_s
            for ep in endpoints:
                ep.service(now)
            deadline = next_step
            for p in self.ports:
                t = p.next_due(now)
                if t is not None and t < deadline:
                    deadline = t
            timeout = max(0.0, deadline - time.monotonic())
            wfds = [fd for fd in by_fd if by_fd[fd].pty.wants_write()]
            try:
                rfds = [fd for fd in by_fd if by_fd[fd].wants_read(now)]
                r, w, _x = select.select(rfds, wfds, [], timeout)
            except InterruptedError:
                continue
            now = time.monotonic()
            for fd in r:
                by_fd[fd].on_readable(now)
            for fd in w:
                by_fd[fd].pty.write()

    def close(self):
        for p in self.ports:
            p.pty.close()
        self.board.pty.close()
        if self.truth is not None:
            self.truth.close()


def main(argv=None):
    args = build_parser().parse_args(argv)    # exits 2 with a message on bad arguments
    model = models.get(args.model)
    faults = []
    try:
        for spec in args.fault:
            faults.append(validate_fault(parse_fault(spec), model))
    except FaultError as e:
        print('hashpilot sim: bad --fault: %s' % e, file=sys.stderr)
        return 2
    try:
        args.chip_overrides = [parse_chip(spec, model) for spec in args.chip]
        args.lots = [parse_lot(spec) for spec in args.lot]
    except FaultError as e:
        print('hashpilot sim: %s' % e, file=sys.stderr)
        return 2
    sim = Simulator(args, faults)

    def stop(_signum, _frame):
        sim.running = False
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    info = sim.info()
    try:
        if args.ports_file:
            write_ports_file(args.ports_file, info)
        print('hashpilot sim: %s chains %s board %s (time scale %g, pid %d)'
              % (info['model'], ' '.join(info['chains']), info['board'], sim.time_scale,
                 info['pid']), flush=True)
        sim.run()
    finally:
        sim.close()
        if args.ports_file:
            try:
                os.remove(args.ports_file)
            except OSError:
                pass
    return 0
