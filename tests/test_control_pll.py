"""The control loop's PLL answers are cached (every tick asks for every chip) and equal the solver's."""

from agent.control import PLL_CACHE_SIZE, ControlLoop
from hal import families, models, pll


class RigData:
    """Only the registries' data: pll_mhz needs no I/O."""

    def __init__(self, model):
        self.model = models.get(model)
        self.family = families.get(self.model['chip'])
        self.chains = []


def test_pll_mhz_is_the_solver_answer_and_solves_each_target_once(monkeypatch):
    loop = ControlLoop(RigData('S21'), supervisor=None, clock=None)
    calls = []
    real = pll.solve
    monkeypatch.setattr(pll, 'solve', lambda fam, mhz: calls.append(mhz) or real(fam, mhz))
    targets = [485.0, 490.0, 512.3, 485.0, 490.0] * 100
    got = [loop.pll_mhz(t) for t in targets]
    assert got == [real(loop.family, t)['freq_mhz'] for t in targets]
    assert sorted(set(calls)) == [485.0, 490.0, 512.3] and len(calls) == 3
    for k in range(PLL_CACHE_SIZE + 5):        # bounded: a long tuner run cannot grow it forever
        loop.pll_mhz(300.0 + k * 0.01)
    assert len(loop._pll_cache) <= PLL_CACHE_SIZE
