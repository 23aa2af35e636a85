"""ChainDriver.set_frequencies: per-chip targets ramp together and show up in each chip's hashrate.

Robust under load (the CI box is quiet, shared dev boxes are not): the ramp is checked by the
number of write batches it sends (not wall time), and hashrates by the median of several
counter windows. A counter window's length is estimated from when the requests were sent; a
simulator process that is scheduled late samples later than that, so one window can be off by
tens of percent on a loaded machine. Such a delay hits every chip of a batch alike, so each
chip's rate is also checked against the chain's mean, which cancels it."""

import statistics
import time

import pytest

from hal.limits import LimitError
from hal.rig import Rig
from tests.simproc import start_sim

WINDOWS = 5
WINDOW_WALL_S = 0.4


def _rate_windows(ch):
    """Per-chip hashrate of WINDOWS consecutive counter windows: {addr: [ghs, ...]}."""
    ch.poll()                        # opens each chip's window (restarted by the ramp)
    out = dict((c.addr, []) for c in ch.chips)
    for _ in range(WINDOWS):
        for c in ch.chips:
            c.hashrate_ghs = None
        time.sleep(WINDOW_WALL_S)
        ch.poll()
        for c in ch.chips:
            if c.hashrate_ghs is not None:
                out[c.addr].append(c.hashrate_ghs)
    return out


def test_per_chip_targets_ramp_together_and_show_in_hashrate():
    with start_sim('S21', time_scale=10, seed=4) as sim:
        rig = Rig.from_ports_file(sim.ports_file)
        try:
            rig.start(baud=3125000)
            ch = rig.chains[0]
            plan = dict((c.addr, 400.0 + 2.5 * (c.index % 20)) for c in ch.chips)
            tags = []
            send = ch.send
            ch.send = lambda frame, tag=None: (tags.append(tag), send(frame, tag))[1]
            try:
                done = ch.set_frequencies(plan)
            finally:
                del ch.send
            # Together: one write batch per 6.25 MHz step for the whole chain (490 -> 400 MHz
            # is 15 steps), not one ramp per chip after another.
            assert 0 < tags.count('ramp') <= 15, tags
            assert done == dict((a, pytest.approx(f, abs=0.3)) for a, f in plan.items())
            rates = _rate_windows(ch)
            cores = rig.model['cores_per_chip']
            med = dict((a, statistics.median(xs)) for a, xs in rates.items() if xs)
            assert set(med) == set(plan)
            mean_f = statistics.mean(plan.values())
            mean_r = statistics.mean(med.values())
            assert mean_r == pytest.approx(mean_f * cores / 1000.0, rel=0.03), (mean_r, rates)
            for a, f in plan.items():
                assert med[a] == pytest.approx(f * cores / 1000.0, rel=0.05), (a, f, rates[a])
                # the chip's own clock, relative to the chain (a common delay cancels)
                assert med[a] / mean_r == pytest.approx(f / mean_f, rel=0.01), (a, f, rates[a])
            with pytest.raises(LimitError):
                ch.set_frequencies({ch.chips[0].addr: 5000.0, ch.chips[1].addr: 450.0})
            assert ch.chips[1].freq_mhz == pytest.approx(plan[ch.chips[1].addr], abs=0.3)
        finally:
            rig.close()


# Starts real processes (simulator, agent, broker): left out of `make test-fast`.
pytestmark = pytest.mark.e2e
