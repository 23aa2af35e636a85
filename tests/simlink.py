"""Test helper: a ChainDriver wired to simulated chips in the same process (hal/sim/link.py)."""

import random

from hal import families, models
from hal.chain import ChainDriver
from hal.limits import HardwareLimits
from hal.sim.chips import Chain
from hal.sim.link import ManualClock, SimLink

__all__ = ['ManualClock', 'SimLink', 'sim_chain', 'model_for', 'linked_driver']


def sim_chain(family_name, chips, fmax_mhz=2000.0, temp_c=60.0, seed=1, cores=1000):
    """A chain of healthy chips (far below their limit: no errors) at a fixed temperature."""
    fam = families.get(family_name)
    silicons = [{'dead': False, 'speed': 1.0, 'leak': 1.0, 'cap': 1.0} for _ in range(chips)]
    chain = Chain(fam, silicons, cores, 500.0, random.Random(seed))
    for c in chain.chips:
        c.fmax_mhz = fmax_mhz
        c.temp_c = temp_c
    return chain


def model_for(family_name):
    for m in models.MODELS.values():
        if m['chip'] == family_name:
            return m
    return models.get('S21')


def linked_driver(family_name, chips, seed=1):
    """(driver, chain, clock) wired through a SimLink."""
    clock = ManualClock()
    chain = sim_chain(family_name, chips, seed=seed)
    fam = families.get(family_name)
    model = model_for(family_name)
    drv = ChainDriver(SimLink(chain, clock, seed=seed), fam, clock,
                      HardwareLimits(model, fam), f_nom_mhz=model['f_nom_mhz'], retries=1)
    return drv, chain, clock
