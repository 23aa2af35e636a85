"""`hashpilot fleet curtail` on a site of simulated rigs (mixed S21 / S19J Pro, each its own agent
and simulator, time-warped): the site ends within 2 % under the cap, the hashrate kept is within
2 % of the best allocation computed from the rigs' own tuning curves (the simulator oracle), no rig
passes its safety limits, and --restore brings the power back.

The default run is small (4 rigs, seeds whose curves ship in fleet/curves.py, one curve point
re-checked live against the oracle). HP_CURTAIL_RIGS=N (slow marker) runs N rigs with their own
seeds and computes every rig's curve with the oracle.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from fleet import allocate
from fleet import curves as shipped
from hal import models
from tests.agentproc import REPO, AgentProcess
from tests.broker import Broker
from tests.simproc import start_sim

# Known ways this run fails (2026-12-02): (1) at load 15-20 on 2 cores the 4 agents + 4
# simulators at 10x cannot keep simulated time (die readings stale in simulated seconds, boards
# derated or off, tunes unfinished): overload_summary() shows it. (2) At any load, when the
# measured before-powers make the efficiency plan give an S19J Pro a target below what its
# tuner reaches on the simulator (770 W asked, 1157 W held; 1255 asked, 1338 held), the tool
# escalates it and re-plans, as documented: that does not fit --ramp-s 240 and the rig's
# status is then 'escalated', not 'ok'.
TIME_SCALE = float(os.environ.get('HP_CURTAIL_TIME_SCALE', '10'))
SITE = 'shed'


def oracle_curve(model, seed):
    from hal.sim import oracle as O
    m = models.get(model)
    prob = O.problem_for(model, seed=seed)
    out = []
    for f in (0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0, 1.1):
        r = O.optimise(prob, 'power', min(f * m['nameplate_w'], m['power_limit_w']))
        out.append([r['wall_w'], r['good_ths']])
    return out


def check_shipped_curve(model):
    """The shipped curve is still what the oracle says (one point, live)."""
    from hal.sim import oracle as O
    w, ths = shipped.CURVES[model][5]
    r = O.optimise(O.problem_for(model, seed=1), 'power', w)
    assert r['good_ths'] == pytest.approx(ths, rel=0.002), (model, w, ths, r['good_ths'])


class Site:
    def __init__(self, tmp_path, broker, specs):
        self.sims, self.agents, self.specs = [], [], specs
        try:
            for name, model, seed in specs:
                sim = start_sim(model, time_scale=TIME_SCALE, seed=seed)
                self.sims.append(sim)
                # Time-warped on a shared machine: a 1 s scheduling hiccup is 10 simulated seconds,
                # so the stall watchdog (simulated seconds) gets a wall-clock sized margin.
                self.agents.append(AgentProcess(tmp_path, sim.ports_file, broker, site=SITE, rig=name,
                                                telemetry_s=2, chips_s=60,
                                                extra_cfg='[safety]\nwatchdog_s = %d\n' % (12 * TIME_SCALE)))
        except BaseException:
            self.close()
            raise

    def close(self):
        for a in self.agents:
            try:
                a.stop()
            except Exception:
                pass
        for s in self.sims:
            s.stop()


def overload_summary(site):
    """How often each agent saw its die readings go stale or its chip poll stall: at 10x, on a
    host too loaded to keep simulated time, these come by the dozen and the tunes cannot finish
    (a host problem, not a curtail one)."""
    lines = ['agents: stale-die / stalled-poll / boards-off alarms (host keeping simulated time?)']
    for a in site.agents:
        try:
            text = a.log()
        except OSError:
            continue
        lines.append('  %s: %d / %d / %d' % (
            os.path.basename(a.log_path), text.count('dies_stale raise'), text.count('rig.poll_stalled raise'),
            text.count('.off raise')))
    return '\n'.join(lines)


def _curtail(broker, *args, timeout_s=600, log_path=None):
    """Run the tool; its log (stderr) goes to log_path as it runs, so a run cut short by a
    timeout still shows how far it got."""
    cmd = [sys.executable, '-m', 'agent', 'fleet', 'curtail', '--broker', '127.0.0.1:%d' % broker.port,
           '--site', SITE, '--json'] + list(args)
    with open(log_path, 'w') as log:
        p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            out = p.communicate(timeout=timeout_s)[0]
        except BaseException:
            p.kill()
            p.wait()
            with open(log_path) as f:
                print('fleet curtail %s log:\n%s' % (' '.join(args[:2]), f.read()[-4000:]))
            raise
    with open(log_path) as f:
        err = f.read()
    assert out.strip(), err
    return p.returncode, json.loads(out.strip().splitlines()[-1]), err


def _run(tmp_path, specs, cap_frac, curves, follow_restore=True, ramp_s=240):
    with Broker() as broker:
        site = Site(tmp_path, broker, specs)
        try:
            state_file = str(tmp_path / 'curtail.json')
            # Stock rigs: the site draws about sum(nameplate); cap a fraction of it.
            stock_w = sum(models.get(m)['nameplate_w'] for _, m, _ in specs)
            cap_kw = round(cap_frac * stock_w / 1000.0, 2)
            t0 = time.monotonic()
            rc, out, err = _curtail(broker, '--max-kw', str(cap_kw), '--ramp-s', str(ramp_s), '--rigs', str(len(specs)),
                                    '--discover-s', '90', '--state-file', state_file,
                                    log_path=str(tmp_path / 'curtail.log'))
            took_s = time.monotonic() - t0
            rows = dict((r['rig'], r) for r in out['rigs'])
            print(err)
            assert rc == 0 and out['ok'], err
            cap_w = cap_kw * 1000.0
            after_w = sum(r['after_w'] for r in rows.values())
            assert 0.98 * cap_w <= after_w <= cap_w, (after_w, cap_w)
            # Best allocation for the cap from the rigs' own curves, same bounds as the tool.
            alloc = []
            for name, model, seed in specs:
                r = rows[SITE + '/' + name]
                lo = round(0.2 * models.get(model)['nameplate_w'])
                alloc.append({'key': r['rig'], 'w': r['before_w'], 'ths': r['before_ths'], 'min_w': lo,
                              'max_w': r['before_w'], 'curve': curves[(model, seed)]})
            best = allocate.allocate(alloc, cap_w, 'efficiency')
            best_ths = allocate.hashrate(alloc, best)
            kept_ths = sum(r['after_ths'] for r in rows.values())
            assert kept_ths >= 0.98 * best_ths, (kept_ths, best_ths, best)
            for name, model, _ in specs:
                r, m = rows[SITE + '/' + name], models.get(model)
                assert r['status'] == 'ok' and r['safety'] == [], r
                assert r['hot_c'] < m['temp_hot_c'] and r['after_w'] < m['power_limit_w'], r
            # Restore: every rig back to about its power before the cap (the small run only checks
            # that every rig accepted its old power: one more tune is another minute).
            rc2, out2, err2 = _curtail(broker, '--restore', '--ramp-s', '240', '--rigs', str(len(specs)),
                                       '--discover-s', '60', '--state-file', state_file,
                                       *([] if follow_restore else ['--no-follow']),
                                       log_path=str(tmp_path / 'restore.log'))
            assert rc2 == 0, err2
            back = dict((r['rig'], r) for r in out2['rigs'])
            for key, r in rows.items():
                assert back[key]['target_w'] == pytest.approx(r['before_w'], abs=1)
                assert back[key]['status'] == 'ok', back[key]
                if follow_restore:
                    assert back[key]['after_w'] == pytest.approx(r['before_w'], rel=0.03), (key, back[key])
            return {'cap_w': cap_w, 'after_w': after_w, 'kept_ths': kept_ths, 'best_ths': best_ths,
                    'took_s': took_s, 'rows': out['rigs']}
        except BaseException:
            print(overload_summary(site))
            raise
        finally:
            site.close()


@pytest.mark.slow
@pytest.mark.timeout(1500)   # two tool runs of up to 600 s each, not the suite's 600 s per test
def test_curtail_small_site(tmp_path):
    for model in ('S21', 'S19JPRO'):
        check_shipped_curve(model)
    specs = [('s21-a', 'S21', 1), ('s21-b', 'S21', 1), ('s19-a', 'S19JPRO', 1), ('s19-b', 'S19JPRO', 1)]
    curves = {('S21', 1): shipped.CURVES['S21'], ('S19JPRO', 1): shipped.CURVES['S19JPRO']}
    res = _run(tmp_path, specs, 0.7, curves, follow_restore=False)
    print(json.dumps(res, indent=1))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get('HP_CURTAIL_RIGS'), reason='opt-in: HP_CURTAIL_RIGS=N')
def test_curtail_bigger_site(tmp_path):
    n = int(os.environ['HP_CURTAIL_RIGS'])
    specs = [('rig-%02d' % i, 'S21' if i % 2 == 0 else 'S19JPRO', 10 + i) for i in range(n)]
    curves = dict(((m, s), oracle_curve(m, s)) for _, m, s in specs)
    # Re-plans after an escalation mean more than one tune in a row: a longer ramp.
    res = _run(tmp_path, specs, float(os.environ.get('HP_CURTAIL_CAP', '0.65')), curves, ramp_s=600)
    print(json.dumps(res, indent=1))
