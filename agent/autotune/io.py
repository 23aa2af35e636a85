"""The narrow IO the tuner works through; the agent (over ControlLoop) and the benchmark/CLI (over
hal/rig.py, see halio.py) implement it, tests use plant.py. Pure: no imports.

Every method returns at once (no waiting on hardware beyond one request); the tuner never reads
anything else. Units are in names.

    now_s() -> float                       physics seconds (monotonic)
    model() -> dict                        hal/models.py model (boards, chips, f_nom, stock mV...)
    family() -> dict                       hal/families.py family (for hal/pll.solve)
    limits() -> dict                       HardwareLimits.get_status() (freq/voltage bounds)
    board_ids() -> [str]                   BoardController.board_id(board) per board
    chips() -> [[chip]]                    per board, per chip, as ChainDriver.poll gives them:
        {'freq_mhz', 'temp_c', 'hashrate_ghs', 'err_pct', 'alive',
         'hash_units', 'err_units'}        the last two: cumulative counter deltas (units of
                                           2^32 hashes) of completed windows, each window at a
                                           single frequency (Poisson statistics need counts);
                                           with [work] tuner_source = "nonces": verified and
                                           wrong nonces (one unit per nonce)
    power_w() -> float | None              input power (PSU), None when unreadable
    voltage_mv() -> [mv per board]         setpoints
    set_voltage_mv(board_or_None, mv)      None = the rig rail (voltage_per == 'rig')
    request_frequencies({(board, chip): mhz})   applied by the control loop (limits enforced there)
    uart() -> [{'baud', 'time_scale'}]     per board, for the nonce ticket budget
    set_ticket_bits(board, bits)
    safety_ok() -> bool                    False: the tuner yields at once and changes nothing
    source (attribute, optional)           'nonces': hash_units/err_units are verified and wrong
                                           nonces, and the tuner decides on Poisson bounds
                                           (nonces.py); absent or 'counters': counter units
"""


class TunerIO:
    """Base class documenting the interface (subclasses override every method)."""

    def now_s(self):
        raise NotImplementedError

    def model(self):
        raise NotImplementedError

    def family(self):
        raise NotImplementedError

    def limits(self):
        raise NotImplementedError

    def board_ids(self):
        raise NotImplementedError

    def chips(self):
        raise NotImplementedError

    def power_w(self):
        raise NotImplementedError

    def voltage_mv(self):
        raise NotImplementedError

    def set_voltage_mv(self, board, mv):
        raise NotImplementedError

    def request_frequencies(self, plan):
        raise NotImplementedError

    def uart(self):
        raise NotImplementedError

    def set_ticket_bits(self, board, bits):
        raise NotImplementedError

    def safety_ok(self):
        raise NotImplementedError
