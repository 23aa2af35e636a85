"""One-board rig for the port (a Bitaxe: one chain, one board of I2C parts): what hal/rig.Rig
gives the control loop (model, family, limits, chains, board, start), without pyserial/threads.
"""

from hal import families


class SingleBoardRig:
    def __init__(self, model, limits, chain, board):
        self.model = model
        self.family = families.get(model['chip'])
        self.limits = limits
        self.chains = [chain]
        self.board = board
        self.started = False

    def start(self, freq_mhz=None, baud=None, silence_s=0.5, ticket_bits=8, rescans=2):
        """Power the board, then scan, address and init its chain. Returns [chips found]."""
        if freq_mhz is None:
            freq_mhz = self.model['f_nom_mhz']
        self.limits.check_freq(freq_mhz)
        self.board.set_enabled(None, True)
        drv = self.chains[0]
        ids = drv.enumerate(silence_s=silence_s, try_bauds=sorted(self.family['fast_bauds']))
        for _ in range(rescans):
            if len(ids) >= self.model['chips_per_board']:
                break
            ids = drv.enumerate(silence_s=silence_s)
        if ids:
            drv.assign_addresses()
            drv.init(freq_mhz, ticket_bits=ticket_bits, baud=baud)
        self.started = True
        return [len(ids)]

    def close(self):
        for c in self.chains:
            try:
                c.transport.close()
            except Exception:
                pass
        try:
            self.board.close()
        except Exception:
            pass
