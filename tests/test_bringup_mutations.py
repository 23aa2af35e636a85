"""Mutation tests: the simulated chips are as strict as silicon about bring-up.

For every family the full bring-up (hal/families.py 'bringup', run by the real ChainDriver)
hashes: every chip answers at its address, counts hashes at f x cores, sends nonces at the
ticket rate without duplicates and (where the family has one) gives a die temperature. Then
each bring-up write is dropped, and corrupted, in turn (values the driver computes too: a
ticket mask of difficulty 1, a sweep length past the counter, identical 0x0C offsets): the chain must visibly fail (silent
chips, wrong counters, nonce flood or duplicates, no temperature) unless the write is listed
in REDUNDANT below with the reason it cannot show on a freshly reset chain.
"""

import pytest

from hal import families
from hal.chain import ChainDriver, ChainError
from tests.simlink import ManualClock, SimLink, model_for, sim_chain

from hal.limits import HardwareLimits

CASES = {            # case: (family, chips, MHz, baud)
    'BM1368': ('BM1368', 4, 490.0, 3125000),
    'BM1370': ('BM1370', 4, 525.0, 3125000),
    'BM1370-bitaxe': ('BM1370', 1, 525.0, 1041667),
    'BM1362': ('BM1362', 4, 525.0, 3125000),
    'BM1366': ('BM1366', 4, 485.0, 3125000),
    'BM1397': ('BM1397', 2, 425.0, 3125000),
}
CORES = 1000
WINDOW_S = 40.0

# Writes whose loss or corruption no freshly reset chain can show, and why. Keyed by
# (family, mutation id) with mutation ids as made by mutations() below.
_A4_REPEAT = 'a repeat of the same 0xA4 write; one is enough'
_BC_BEFORE_CHIP = ('broadcast copy of a value the per-chip pass writes again after the core '
                   'reset, which clears core registers')
REDUNDANT = {
    'bc A8 00070000': 'state normalisation: the reset default of 0xA8, already there after reset',
    'bc A8 00000000': 'state normalisation: the reset default of 0xA8 (BM1362), already there',
    'bc 18 FF0FC100': 'overwritten by the per-chip 0x18 write before anything hashes',
    'bc 18 F000C100': 'overwritten by the per-chip 0x18 write before anything hashes',
    'bc 18 B000C100': 'overwritten by the per-chip 0x18 write before anything hashes',
    'bc 3C 80008B00': _BC_BEFORE_CHIP, 'bc 3C 80008018': _BC_BEFORE_CHIP,
    'bc 3C 8000800C': _BC_BEFORE_CHIP, 'bc 3C 80008540': _BC_BEFORE_CHIP,
    'bc 3C 80008020': _BC_BEFORE_CHIP, 'bc 3C 80008008': _BC_BEFORE_CHIP,
    'bc 54 00000003': 'analog mux select 3 (no diode readout): effect not modelled (unknown)',
    'bc 58 02111111': 'IO drive strength: only shows on long real chains (not modelled)',
    'bc 58 00011111': 'IO drive strength: only shows on long real chains (not modelled)',
    'one 2C 007C0003': 'UART relay of chip 0: only shows across real voltage domains',
    'bc B9 00004480': 'ADC control paired with the 0x54 diode select: not decoded, not modelled',
    'bc 3C 80008DEE': 'nonce bin overflow control: effect unknown, not modelled',
    'bc 80 00000000': 'BM1397 clock order control: reset value per skot/BM1397 (not modelled)',
    'bc 84 00000000': 'BM1397 clock order control: reset value per skot/BM1397 (not modelled)',
    'bc 20 00000001': 'BM1397 ordered clock enable: not modelled',
    'bc 3C 80008074': 'BM1397 core register 0: not modelled (no core enable on BM1397)',
    'bc 68 C0700111': 'BM1397 PLL3 (UART clock source): not modelled',
    'bc 28 0600000F': 'BM1397 fast UART configuration: its reset value',
    'bc 18 00007A31': 'BM1397 0x18 = reset baud divider: chips are already there after reset',
    ('BM1370', 'bc 54 00000002'): 'on a chain the diode goes to board sensors not modelled here',
    ('BM1370', 'bc B9 00004480'): 'ADC control paired with the 0x54 diode select: not modelled',
    ('BM1370-bitaxe', 'inactive'): 'one chip: it keeps address 0, the one it is given anyway',
    ('BM1370-bitaxe', 'offsets'): 'one chip sweeps the whole space: no offset is written',
}


def _step_id(step):
    if step[0] in ('bc', 'one'):
        return '%s %02X %08X' % (step[0], step[1], step[2])
    return step[0]


def mutations(family):
    """(mutation id, mutated step list) for every step and every per-chip write, dropped and
    corrupted; repeats of an identical step are one unit (dropping all copies)."""
    steps = family['bringup']
    out = []
    seen = set()
    for i, step in enumerate(steps):
        sid = _step_id(step)
        if step[0] == 'scan':
            continue
        if step[0] == 'chip':
            for k, (reg, value) in enumerate(step[1]):
                writes = list(step[1])
                dropped = writes[:k] + writes[k + 1:]
                out.append(('chip %02X %08X drop' % (reg, value),
                            steps[:i] + [('chip', tuple(dropped))] + steps[i + 1:]))
                bad = writes[:k] + [(reg, value ^ 0xFFFFFFFF)] + writes[k + 1:]
                out.append(('chip %02X %08X corrupt' % (reg, value),
                            steps[:i] + [('chip', tuple(bad))] + steps[i + 1:]))
            continue
        if sid in seen:
            continue
        seen.add(sid)
        same = [j for j, s in enumerate(steps) if _step_id(s) == sid]
        if step[0] == 'baud':
            continue            # the host's own switch: see baud_mutations()
        out.append((sid + ' drop', [s for j, s in enumerate(steps) if j not in same]))
        if step[0] in ('bc', 'one'):
            bad = (step[0], step[1], step[2] ^ 0xFFFFFFFF)
            out.append((sid + ' corrupt', [bad if j in same else s for j, s in enumerate(steps)]))
        elif step[0] == 'temp':
            bad = ('temp', tuple(reversed(step[1])), step[2])
            out.append((sid + ' corrupt', [bad if j in same else s for j, s in enumerate(steps)]))
        elif step[0] in CORRUPT_COMPUTED:
            bad = CORRUPT_COMPUTED[step[0]](family)
            out.append((sid + ' corrupt', [bad if j in same else s for j, s in enumerate(steps)]))
    return out


def _hcn_too_long(family):
    # a sweep longer than a core's whole 25-bit counter at any case's clock: every chip's
    # sweep runs into nonces another chip (or its own next batch) also sweeps
    return ('bc', families.REG_HASH_COUNTING, 0x00400000)


# Values the driver computes (not step data): corrupted the way a driver bug would.
CORRUPT_COMPUTED = {
    'ticket': lambda fam: ('bc', families.REG_TICKET_MASK, 0),          # difficulty 1: a flood
    'hcn': _hcn_too_long,
    'offsets': lambda fam: ('chip', ((families.REG_NONCE_OFFSET, 0x80001000),)),  # all alike
}


def baud_mutations(family, baud):
    """The chips' baud write lost (sent to a register nothing uses) or carrying a wrong divider,
    while the host still switches its UART."""
    lost = dict(family, baud_reg=0xFE)
    word = family['fast_bauds'][baud]
    wrong = dict(family, fast_bauds=dict(family['fast_bauds']))
    wrong['fast_bauds'][baud] = word ^ (0x00000100 if family['baud_reg'] == 0x28 else 0x00000200)
    return [('baud drop', lost), ('baud corrupt', wrong)]


def bring_up(case, steps=None, drv_fam=None):
    family_name, chips, mhz, baud = CASES[case]
    fam = families.get(family_name)
    drv_fam = dict(drv_fam or fam)
    if steps is not None:
        drv_fam['bringup'] = steps
    clock = ManualClock()
    chain = sim_chain(family_name, chips, cores=CORES)
    model = model_for(family_name)
    drv = ChainDriver(SimLink(chain, clock), drv_fam, clock, HardwareLimits(model, fam),
                      f_nom_mhz=model['f_nom_mhz'], retries=1)
    if fam['die_temp_via'] == 'diode_mux':
        # what the board's external sensor sees (tests/test_sim_board.py covers the pty path)
        sim_chip = chain.chips[0]
        drv.die_temp_fn = lambda: sim_chip.temp_c if sim_chip.diode_routed() else None
    drv.enumerate(silence_s=0.02)
    try:
        drv.assign_addresses()
        drv.init(mhz, baud=baud)
    except ChainError as exc:
        drv.bringup_error = str(exc)      # the driver itself refuses: visible
    return drv, chain, clock


def symptoms(drv, chain, clock, case):
    """What an operator would see wrong with the chain (empty list: it hashes as it should)."""
    family_name, chips, mhz, _ = CASES[case]
    fam = families.get(family_name)
    out = []
    if getattr(drv, 'bringup_error', None):
        return ['bring-up error: %s' % drv.bringup_error]
    if len(drv.chips) != chips:
        return ['%d of %d chips found' % (len(drv.chips), chips)]
    if sorted(drv.verify_addresses()) != sorted(c.addr for c in drv.chips):
        out.append('chips silent at their address')
    drv.poll()
    n0 = drv.nonces
    clock.sleep(WINDOW_S)
    st = drv.poll()
    want_ghs = chips * mhz * CORES / 1000.0
    rates = [c['hashrate_ghs'] for c in st['chips']]
    if any(r is None for r in rates) or abs(sum(rates) - want_ghs) > 0.05 * want_ghs:
        out.append('hashrate %s GH/s, expected %.0f' % (
            None if any(r is None for r in rates) else round(sum(rates)), want_ghs))
    want_nonces = want_ghs * 1e9 * WINDOW_S / 2 ** 40
    got = drv.nonces - n0
    if not 0.5 * want_nonces <= got <= 2.0 * want_nonces:
        out.append('%d nonces, expected about %.0f' % (got, want_nonces))
    if st['nonces_duplicate']:
        out.append('%d duplicate nonces' % st['nonces_duplicate'])
    if st['nonces_unattributed']:
        out.append('%d nonces of no chip' % st['nonces_unattributed'])
    if fam['die_temp'] or (fam['die_temp_via'] == 'diode_mux' and chips == 1):
        temps = [c['temp_c'] for c in st['chips']]
        if any(t is None or not 20.0 < t < 100.0 for t in temps):
            out.append('die temperatures %s' % temps)
    return out


@pytest.mark.parametrize('case', sorted(CASES))
def test_full_bringup_hashes(case):
    drv, chain, clock = bring_up(case)
    assert symptoms(drv, chain, clock, case) == []
    assert drv.transport.baud == CASES[case][3] == chain.baud


@pytest.mark.parametrize('case', sorted(CASES))
def test_every_bringup_write_matters(case):
    fam = families.get(CASES[case][0])
    silent = []
    listed_but_visible = []
    runs = [(mid, steps, None) for mid, steps in mutations(fam)]
    runs += [(mid, None, f) for mid, f in baud_mutations(fam, CASES[case][3])]
    for mid, steps, drv_fam in runs:
        drv, chain, clock = bring_up(case, steps, drv_fam)
        seen = symptoms(drv, chain, clock, case)
        base = mid.rsplit(' ', 1)[0]
        if base in REDUNDANT or (case, base) in REDUNDANT:
            if seen and mid.endswith('drop'):
                listed_but_visible.append((mid, seen))
            continue
        if not seen:
            silent.append(mid)
    assert silent == [], 'mutations the simulated chain does not notice: %s' % silent
    assert listed_but_visible == [], 'listed as redundant but visible: %s' % listed_but_visible
