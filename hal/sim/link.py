"""In-process link between a ChainDriver and simulated chips (no ptys).

SimLink has the Transport interface; bytes go through the real command framer into a
hal.sim.chips.Chain and its answers (plus the nonces found meanwhile) come back. A wrong host
rate garbles bytes both ways, as the simulator's ptys do (hal/sim/uart.py). ManualClock makes the
driver's physics waits (PLL ramp steps, counter windows) instant. Used by `hashpilot sim --warm`
(chains brought up by the real driver before the ptys open) and by the mutation tests.
"""

import random
import time

from hal.framer import CommandFramer
from hal.sim.uart import baud_mismatch


class ManualClock:
    time_scale = 0.0       # answers take no physics time

    def __init__(self):
        self.t = 0.0

    def monotonic(self):
        return self.t

    def wall(self):
        return time.monotonic()

    def sleep(self, seconds):
        if seconds > 0:
            self.t += seconds

    def to_wall(self, seconds):
        return 0.0


class SimLink:
    def __init__(self, chain, clock, baud=115200, seed=1):
        self.chain = chain
        self.clock = clock
        self.baud = baud
        self.framer = CommandFramer()
        self.rx = bytearray()
        self.t_last = clock.monotonic()
        self.rng = random.Random(seed)
        self.garbled = 0

    def _garble(self, data):
        if not baud_mismatch(self.baud, self.chain.baud):
            return data
        self.garbled += len(data)
        return bytes(self.rng.getrandbits(8) for _ in data)

    def _nonces(self):
        t = self.clock.monotonic()
        dt = t - self.t_last
        self.t_last = t
        if dt > 0:
            frames, _ = self.chain.nonce_frames(dt)
            for fr in frames:
                self.rx += self._garble(fr)

    def write(self, data):
        self._nonces()
        for frame in self.framer.feed(self._garble(bytes(data))):
            for resp in self.chain.handle(frame, self.clock.monotonic()):
                self.rx += self._garble(resp)

    def read(self, timeout_s=0.0):
        self._nonces()
        out = bytes(self.rx)
        self.rx = bytearray()
        return out

    def drain(self):
        pass

    def discard_input(self):
        self._nonces()
        self.rx = bytearray()

    def set_baud(self, baud):
        self.baud = int(baud)

    def byte_time_s(self):
        return 10.0 / self.baud

    def close(self):
        pass

    def get_status(self):
        return {'url': 'simlink://', 'baud': self.baud, 'os_baud_ok': True}


def bring_up(chain, model, freq_mhz=None, seed=1):
    """Run the real driver's full bring-up on a simulated chain (at the reset baud)."""
    from hal.chain import ChainDriver
    from hal.limits import HardwareLimits
    from hal import families
    fam = families.get(model['chip'])
    clock = ManualClock()
    drv = ChainDriver(SimLink(chain, clock, seed=seed), fam, clock, HardwareLimits(model, fam),
                      f_nom_mhz=model['f_nom_mhz'])
    drv.enumerate(silence_s=0.005)
    drv.assign_addresses()
    drv.init(freq_mhz or model['f_nom_mhz'])
    return drv
