"""One source for the figures derived from the chain driver's chips: a chip's state (ok, dead or
off) and a chain's hashrate. The driver counts hashes once (hal/chain.py ChainDriver.account);
everything that sums them into board and rig figures (chain status, telemetry, the cgminer API
through telemetry, the work engine) calls these, so the figures cannot drift apart.

Plain functions over the driver's Chip objects (attributes alive, hashrate_ghs): MicroPython-safe.
"""

OK = 'ok'
DEAD = 'dead'
OFF = 'off'


def chip_state(chip, board_on=True):
    """'off' on a board that is not hashing, 'dead' for a chip that stopped answering, else 'ok'."""
    if not board_on:
        return OFF
    return OK if chip.alive else DEAD


def counts(chip, board_on=True):
    """Whether a chip's hashrate counts towards its board (only an answering chip on a board
    that hashes: a dead chip keeps its last rate, which is stale)."""
    return board_on and chip.alive


def chain_ghs(chips, board_on=True):
    """A board's hashrate in GH/s: the sum over the chips that count (an int 0 when none does,
    as the sums this replaces gave)."""
    return sum(c.hashrate_ghs or 0.0 for c in chips if counts(c, board_on))


def alive_count(chips):
    """How many chips answer."""
    return sum(1 for c in chips if c.alive)


def rig_ghs(board_ghs):
    """The rig's hashrate from its boards' figures (what chain_ghs gave for each)."""
    total = 0.0
    for g in board_ghs:
        total += g
    return total
