"""Rig: one model, one ChainDriver per hashboard, one BoardController and the HardwareLimits.

Built from a simulator ports file or explicit URLs; chains are started and polled concurrently
(one thread per chain: each owns its own UART, so the waits overlap, as on real hardware).
"""

import json
import threading

from hal import families, models
from hal.chain import ChainDriver
from hal.clock import Clock
from hal.limits import HardwareLimits
from hal.parallel import run_parallel  # noqa: F401  (re-exported)
from hal.transport import Transport


def serial_board(url, limits, clock):
    """The board controller that speaks hal/board_protocol.py on a serial URL (the simulator's,
    or a controller MCU's): the default backend for a board URL."""
    from hal.board_serial import SerialBoardController
    return SerialBoardController(Transport(url, 115200), limits, clock=clock)


class Rig:
    """Chains + board controller. The board backend comes from `board` (an instance) or
    `board_factory(url, limits, clock)` for `board_url` (as pyserial picks a URL handler)."""

    def __init__(self, model, chain_urls, board_url=None, clock=None, baud=115200,
                 address_rule='pow2', limit_overrides=None, board=None, window=None,
                 work_check_bits=None, board_factory=serial_board):
        self.model = models.get(model) if isinstance(model, str) else model
        self.family = families.get(self.model['chip'])
        self.clock = clock or Clock(1.0)
        self.limits = HardwareLimits(self.model, self.family, limit_overrides)
        self.chains = []
        for url in chain_urls:
            t = Transport(url, baud)
            self.chains.append(ChainDriver(t, self.family, self.clock, self.limits, address_rule,
                                           self.model['f_nom_mhz'], window=window))
        if board is None and board_url is not None:
            board = board_factory(board_url, self.limits, self.clock)
        self.board = board
        # Simulated chips solve nonces to this many zero bits, not 32+N (ports file; see
        # docs/simulator.md "Work"); None on real chains: the ticket mask decides.
        self.work_check_bits = work_check_bits
        self.board_status = None
        self.started = False
        self._board_lock = threading.Lock()
        k = self.model.get('die_diode_sensor')
        if self.family['die_temp_via'] == 'diode_mux' and k is not None and board is not None:
            # BM1370: the die diode reaches the board's sensor k (0x54 select 2), not 0xB4
            for i, drv in enumerate(self.chains):
                drv.die_temp_fn = (lambda b=i: self._board_temp(b, k))

    def _board_temp(self, board, k):
        with self._board_lock:
            try:
                temps = self.board.read_temps_c(board)
            except Exception:         # a failed read is an unknown temperature, never 'cold'
                return None
        return temps[k] if temps is not None and k < len(temps) else None

    @classmethod
    def from_ports_file(cls, path, clock=None, **kw):
        with open(path) as f:
            ports = json.load(f)
        if clock is None:
            clock = Clock(float(ports.get('time_scale', 1.0)))
        kw.setdefault('work_check_bits', ports.get('work_check_bits'))
        return cls(ports['model'], ports['chains'], ports.get('board'), clock=clock,
                   baud=int(ports.get('baud', 115200)), **kw)

    def start(self, freq_mhz=None, baud=None, silence_s=0.5, ticket_bits=8, rescans=2):
        """Enable boards, then enumerate, address and init every chain (concurrently)."""
        if freq_mhz is None:
            freq_mhz = self.model['f_nom_mhz']
        self.limits.check_freq(freq_mhz)
        if self.board is not None:
            self.board.set_enabled(None, True)

        def start_chain(drv):
            def go():
                expected = self.model['chips_per_board']
                ids = drv.enumerate(silence_s=silence_s,
                                    try_bauds=sorted(self.family['fast_bauds']))
                for _ in range(rescans):
                    if len(ids) >= expected:
                        break
                    # A corrupted chip-ID answer hides a chip: scan again before addressing.
                    ids = drv.enumerate(silence_s=silence_s)
                if not ids:
                    return 0
                drv.assign_addresses()
                drv.init(freq_mhz, ticket_bits=ticket_bits, baud=baud)
                return len(ids)
            return go

        counts = run_parallel([start_chain(d) for d in self.chains])
        self.started = True
        return counts

    def recover_chain(self, index, freq_mhz=None, baud=None, silence_s=0.5):
        """Re-scan, re-address and re-init one chain whose chips were reset (e.g. after the
        board was powered off and on). Whoever decides (safety/runner) calls it."""
        return self.chains[index].recover(freq_mhz, baud, silence_s)

    def poll(self, board=True):
        """Poll every chain (concurrently) and, with board=True, the board controller."""
        fns = [d.poll for d in self.chains]
        if board and self.board is not None:
            fns.append(self._poll_board)
        run_parallel(fns)
        return self.get_status()

    def _poll_board(self):
        with self._board_lock:
            self.board_status = self.board.get_status()     # never raises on a failed read

    def set_frequency(self, mhz, board=None, chips=None, ramp=True):
        drivers = self.chains if board is None else [self.chains[board]]
        return run_parallel([(lambda d=d: d.set_frequency(mhz, chips, ramp)) for d in drivers])

    def get_status(self):
        chains = [d.get_status() for d in self.chains]
        return {'model': self.model['name'], 'family': self.family['name'],
                'started': self.started,
                'hashrate_ghs': sum(c['hashrate_ghs'] for c in chains),
                'chips_alive': sum(c['alive'] for c in chains),
                'chips': sum(len(c['chips']) for c in chains),
                'chains': chains, 'board': self.board_status,
                'limits': self.limits.get_status()}

    def close(self):
        for d in self.chains:
            d.transport.close()
        if self.board is not None:
            self.board.close()
