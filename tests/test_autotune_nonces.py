"""Tuning from verified nonces (agent/autotune/nonces.py): Poisson bounds against exact tails and
seeded draws, the CI decision rule, the ticket/window plan, the counter cross-check, and the
tuner converging on the plant with nonce counts only."""

import math
import random

import pytest

from agent.autotune import maths, nonces as N
from agent.autotune import profile as PR
from agent.autotune.plant import PlantIO
from agent.autotune.tuner import Tuner
from hal.sim import oracle as O
from hal.sim import physics as P


def _cdf(k, mu):
    """Exact P(X <= k) for X ~ Poisson(mu)."""
    lm = math.log(mu)
    return sum(math.exp(i * lm - mu - math.lgamma(i + 1.0)) for i in range(k + 1))


def test_bounds_match_exact_poisson_tails():
    tail = 0.5 * math.erfc(N.Z / math.sqrt(2.0))      # 2.28 % one-sided at z = 2
    for k in list(range(0, 40)) + [100, 400, 2000]:
        hi = N.poisson_upper(k)
        # the upper bound is the mean at which seeing <= k has probability `tail`
        assert abs(_cdf(k, hi) - tail) < 0.15 * tail, (k, _cdf(k, hi))
        if k > 0:
            # the lower bound: conservative (smaller) for small counts, close from k = 3 on
            up_tail = 1.0 - _cdf(k - 1, N.poisson_lower(k))
            assert up_tail <= tail * 1.02, k
            assert k < 3 or up_tail > 0.85 * tail, k
    assert N.poisson_lower(0) == 0.0


def test_bounds_cover_seeded_poisson_draws():
    rng = random.Random(12)
    for mu in (0.7, 3.0, 8.0, 40.0, 300.0):
        n = 4000
        over = under = 0
        for _ in range(n):
            k = P.poisson(rng, mu)
            over += N.poisson_upper(k) < mu
            under += N.poisson_lower(k) > mu
        # one-sided 2.3 % each (discreteness makes it smaller, never much larger)
        assert over / n < 0.035 and under / n < 0.035, (mu, over, under)


def test_decision_rule_uses_bounds_not_points():
    t = 0.002
    assert N.decide(0, 1000, t) is None            # 0 of 1000: could still be at 0.2 %
    assert N.decide(0, 3000, t) > 0                # 0 of 3000: below 0.13 % (bound) -> climb
    assert N.decide(3, 1000, t) is None            # point 0.3 % but the bounds hold 0.2 %
    assert N.decide(20, 2000, t) < 0               # 1 %: even the lower bound is above
    assert N.decide(400, 200000, t) == 0.0         # at the target, bounds narrow: settled
    # the step goes only as far as the nearer bound: smaller than the point estimate's
    lo, _hi = N.err_bounds(20, 2000)
    assert abs(N.decide(20, 2000, t)) < abs(maths.ERR_EFOLD * math.log(t / (20.0 / 2000)))
    assert N.decide(20, 2000, t) == pytest.approx(-maths.ERR_EFOLD * math.log(lo / t))
    assert N.decide(900, 1000, t) == -N.STEP_MAX


def test_decisions_rarely_step_the_wrong_way():
    """Chips 1 % of frequency above / below the target (error e^{+-2} x target): with the
    nonces of one decision, the rule never steps the wrong way more than the bound allows."""
    rng = random.Random(5)
    t = 0.002
    n = N.nonces_per_decision(t)
    for true_err, wrong in ((t * math.exp(2.0), lambda s: s > 0),
                            (t * math.exp(-2.0), lambda s: s < 0)):
        bad = 0
        moves = 0
        for _ in range(2000):
            s = N.decide(P.poisson(rng, true_err * n), n, t)
            if s is not None and s != 0.0:
                moves += 1
                bad += wrong(s)
        assert bad <= 0.03 * 2000, (true_err, bad)
        assert moves > 0


def test_plan_picks_lowest_difficulty_that_fits_the_uart():
    hs = 108 * 1280 * 600e6            # an S21 chain near its highest clock
    for baud, k in ((3125000, 1.0), (1041667, 1.0), (115200, 1.0), (1041667, 30.0)):
        p = N.plan(hs, 108, baud, k, share=0.25)
        bits = p['ticket_bits']
        load = N.uart_load(N.nonce_rate_s(hs, bits) * k, baud)
        assert load <= 0.25 + 1e-9 and load == pytest.approx(p['uart_load'])
        if bits > 0:
            assert N.uart_load(N.nonce_rate_s(hs, bits - 1) * k, baud) > 0.25
        assert p['nonce_rate_chip_s'] == pytest.approx(hs / 108 / 2.0 ** (32 + bits))
        assert p['window_s'] == pytest.approx(p['nonces_per_decision'] / p['nonce_rate_chip_s'])
        assert p['cap_binds'] == (p['window_s'] > p['window_max_s'])
    fast = N.plan(hs, 108, 3125000)
    slow = N.plan(hs, 108, 115200)
    assert fast['window_s'] < 60.0 < N.WINDOW_MAX_S < slow['window_s']
    assert slow['cap_binds'] and fast['res_at_cap'] == N.RES
    assert slow['res_at_cap'] > N.RES                  # coarser when the cap binds
    # a host that verifies fewer nonces than the UART carries raises the difficulty
    host = N.plan(hs, 108, 3125000, host_rate_s=500.0)
    assert host['bound'] == 'host' and host['ticket_bits'] > fast['ticket_bits']
    bits = host['ticket_bits']
    assert N.nonce_rate_s(hs, bits) <= 500.0 < N.nonce_rate_s(hs, bits - 1)
    assert N.plan(hs, 108, 3125000, host_rate_s=1e9)['bound'] == 'uart'


def test_nonces_per_decision_follows_the_resolution():
    # finer resolution needs quadratically more errors
    assert N.nonces_per_decision(0.002, res=0.0015) > 3.5 * N.nonces_per_decision(0.002, res=0.003)
    for res in (0.003, 0.0015):
        k = int(math.ceil(N.errors_needed(res=res)))
        assert 0.7 * res < N.resolution(k) < 1.3 * res
    # at the default resolution a chip with no errors must still be able to climb
    assert N.errors_needed() == pytest.approx(N.poisson_upper(0))
    assert 1500 <= N.nonces_per_decision(0.002) <= 2500


def test_cross_check_flags_counts_beyond_the_poisson_bound():
    rng = random.Random(3)
    ok = N.CrossCheck()
    bad = N.CrossCheck()
    units = nonces = inflated = 0.0
    for i in range(60):
        du = 4000.0                    # counter units (2^32 hashes) per observation
        units += du
        k = P.poisson(rng, du / 16.0)  # ticket 2^4
        nonces += k
        inflated += int(1.3 * k)
        ok.update('c', 500.0, units, nonces, 4)
        bad.update('c', 500.0, units, inflated, 4)
    assert ok.checked >= 10 and ok.disagree == 0 and ok.missing == 0
    assert bad.disagree >= bad.checked - 1 >= 10 and bad.extra > 0 and bad.missing == 0
    # an observation without a fresh counter read is skipped (read_s unchanged)
    fresh = N.CrossCheck()
    for k in range(1, 8):
        fresh.update('c', 500.0, 16000.0 * k, 1000 * k, 4, read_s=10.0 * k)
    n = fresh.checked
    fresh.update('c', 500.0, 16000.0 * 8, 1000 * 8 + 900, 4, read_s=70.0)   # same read
    assert fresh.checked == n and fresh.disagree == 0
    # a frequency change starts a new span (no comparison across it)
    before = ok.checked
    ok.update('c', 510.0, units + 1e6, nonces, 4)
    ok.update('c', 510.0, units + 2e6, nonces, 4)
    assert ok.checked == before and ok.disagree == 0


def _tune(io, prof, target, limit_s):
    tuner = Tuner(io, prof, target)
    done = None
    while io.t_s < limit_s:
        tuner.step(io.t_s)
        io.advance(5.0)
        if tuner.stage == 'done':
            done = io.t_s
            break
    return tuner, done


def _held_and_oracle(io, seed, mode, target):
    """The plant's final state (physics steady state) and the oracle's under the same goal."""
    prob = O.problem_for(io.model()['name'], seed=seed, sigma_f=0.05, fan_duty=0.7)
    if mode == 'thermal':
        prob.hot_c = target
    orc = O.optimise_constrained(prob) if mode == 'thermal' else O.optimise(prob, mode, target)
    return prob.verify(io.freqs, io.mv), orc


def test_tuner_converges_from_nonces_only_on_s21():
    """No counters: the plant gives the tuner verified-nonce counts only (3.125 Mbaud)."""
    io = PlantIO('S21', seed=2, sigma_f=0.05, fan_duty=0.7, baud=3125000, nonces=True)
    tuner, done = _tune(io, PR.validate({'mode': 'power'}), 3500.0, 1800.0)
    assert tuner.source == 'nonces'
    assert done is not None and done <= 1200.0
    st, orc = _held_and_oracle(io, 2, 'power', 3500.0)
    assert st['j_per_th'] <= orc['j_per_th'] * 1.01 and abs(st['wall_w'] / 3500.0 - 1.0) <= 0.015
    ns = tuner.get_status()['nonce']
    assert ns['ticket_bits'] == 2 and not ns['cap_binds'] and ns['uart_load'] <= 0.25
    assert io.nonces_dropped == 0


def test_window_cap_makes_decisions_coarser_not_endless():
    """GAMMA at 115 200 baud and a 30x simulator: a decision would need ~350 s; capped at
    120 s the chips decide coarsely and the tune still ends within its budget."""
    io = PlantIO('GAMMA', seed=1, sigma_f=0.05, fan_duty=0.7, baud=115200, time_scale=30.0,
                 nonces=True)
    prof = PR.validate({'mode': 'thermal', 'nonce_window_max_s': 120.0})
    tuner, done = _tune(io, prof, 72.0, 2700.0)
    ns = tuner.get_status()['nonce']
    assert ns['cap_binds'] and ns['capped_decisions'] > 0
    assert done is not None
    st, orc = _held_and_oracle(io, 1, 'thermal', 72.0)
    assert st['good_ths'] >= 0.9 * orc['good_ths']


# integers: float repr differs across interpreters
MPY_EXPRS = [
    "[int(round(N.poisson_upper(k) * 1e6)) for k in (0, 1, 5, 40)]",
    "[int(round(N.poisson_lower(k) * 1e6)) for k in (0, 1, 5, 40)]",
    "[None if s is None else int(round(s * 1e6)) for s in [N.decide(b, n, 0.002) for b, n in "
    "((0, 1000), (0, 3000), (20, 2000), (400, 200000))]]",
    "sorted((k, v if not isinstance(v, float) else int(round(v * 1e6))) "
    "for k, v in N.plan(108 * 1280 * 600e6, 108, 1041667, 1.0, host_rate_s=800.0).items())",
    "N.nonces_per_decision(0.002)",
]


def test_nonce_maths_run_unchanged_under_micropython(tmp_path):
    from tests import mpyunix
    script = 'from agent.autotune import nonces as N\n' + ''.join(
        'print(repr(%s))\n' % e for e in MPY_EXPRS)
    path = tmp_path / 'nonces_check.py'
    path.write_text(script)
    mods = ['agent/__init__.py', 'agent/autotune/__init__.py', 'agent/autotune/maths.py',
            'agent/autotune/nonces.py']
    proc = mpyunix.run(path, mods, tmp_path / 'lib', vendor=False, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    want = [repr(eval(e, {'N': N})) for e in MPY_EXPRS]
    assert proc.stdout.splitlines() == want


def test_disagreement_raises_the_nonce_xcheck_alarm():
    """The agent's tune session raises rig.nonce_xcheck when a new span disagrees (once per
    new disagreement, with the counts), and nothing while the counts agree."""
    from agent.autotune.session import TuneSession
    events = []
    s = TuneSession.__new__(TuneSession)      # only the alarm step, no agent around it
    s.on_event = events.append
    s._xseen = 0
    x = N.CrossCheck()
    units = nonces = 0.0
    for _ in range(12):
        units += 16000.0
        nonces += 1000
        x.update('c', 500.0, units, nonces, 4)
        s._xcheck_alarm(x)
    assert x.checked > 3 and events == []
    for _ in range(3):
        units += 16000.0
        nonces += 600                         # 40 % of the nonces lost on the wire
        x.update('c', 500.0, units, nonces, 4)
        s._xcheck_alarm(x)
    s._xcheck_alarm(x)                        # nothing new: no repeat
    assert [e['id'] for e in events] == ['rig.nonce_xcheck'] * x.disagree and x.disagree >= 2
    assert events[-1]['action'] == 'raise' and 'missing' in events[-1]['message']
    s._xcheck_alarm(None)                     # counter source: no cross-check at all
