"""ChainDriver.set_frequencies: per-chip targets ramp together and show up in each chip's hashrate."""

import time

import pytest

from hal.limits import LimitError
from hal.rig import Rig
from tests.simproc import start_sim


def test_per_chip_targets_ramp_together_and_show_in_hashrate():
    with start_sim('S21', time_scale=10, seed=4) as sim:
        rig = Rig.from_ports_file(sim.ports_file)
        try:
            rig.start(baud=3125000)
            ch = rig.chains[0]
            plan = dict((c.addr, 400.0 + 2.5 * (c.index % 20)) for c in ch.chips)
            t0 = time.monotonic()
            done = ch.set_frequencies(plan)
            wall = time.monotonic() - t0
            # 490 -> 400..447.5 MHz is at most 15 steps of 100 ms physics (time scale 10)
            assert wall < 1.5 * 15 * 0.1 / 10 + 0.5
            assert done == dict((a, pytest.approx(f, abs=0.3)) for a, f in plan.items())
            for _ in range(3):
                time.sleep(0.3)
                ch.poll()
            rates = dict((c.addr, c.hashrate_ghs) for c in ch.chips)
            cores = rig.model['cores_per_chip']
            for a, f in plan.items():
                assert rates[a] == pytest.approx(f * cores / 1000.0, rel=0.03), (a, f, rates[a])
            with pytest.raises(LimitError):
                ch.set_frequencies({ch.chips[0].addr: 5000.0, ch.chips[1].addr: 450.0})
            assert ch.chips[1].freq_mhz == pytest.approx(plan[ch.chips[1].addr], abs=0.3)
        finally:
            rig.close()
