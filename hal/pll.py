"""PLL solver for BM13xx register 0x08 (pure; runs on MicroPython).

f = 25 MHz * FB / (REF * PD1 * PD2); VCO = 25 MHz * FB / REF. Register bytes
[0x40 | (VCO >= 2400 MHz ? 0x10 : 0), FB, REF, post-dividers]. Families differ only in data
(family registry): FB range, post-dividers stored minus one or raw, whether PD1 may equal PD2
(ESP-Miner insists on PD1 > PD2 for BM1366/68/70/97; factory BM1362 firmware writes 6 x 6), and
whether the VCO flag 0x50 is used (BM1397: always 0x40). Never a branch on the chip name.
"""

REF_MHZ = 25.0
VCO_HIGH_MHZ = 2400.0


def solve(family, target_mhz):
    """Best PLL settings for target_mhz: dict(fb, ref, pd1, pd2, freq_mhz, vco_mhz, reg).

    Preference: closest frequency, then lowest VCO, then smallest PD1*PD2 (spec). Raises
    ValueError when no setting lies inside the family's FB range.
    """
    fb_min = family['pll_fb_min']
    fb_max = family['pll_fb_max']
    best = None
    best_key = None
    for ref in (2, 1):
        for pd1, pd2 in post_pairs(family):
            div = ref * pd1 * pd2
            fb = int(target_mhz * div / REF_MHZ + 0.5)
            for cand in (fb - 1, fb, fb + 1):
                if cand < fb_min or cand > fb_max:
                    continue
                freq = REF_MHZ * cand / div
                vco = REF_MHZ * cand / ref
                # ties after (distance, VCO, PD1*PD2) go to the larger REF, then the larger PD1
                # (ESP-Miner's search order keeps the first of equal candidates)
                key = (round(abs(freq - target_mhz), 6), round(vco, 6), pd1 * pd2, -ref, -pd1)
                if best_key is None or key < best_key:
                    best_key = key
                    best = (cand, ref, pd1, pd2, freq, vco)
    if best is None:
        raise ValueError('%s PLL cannot reach %.2f MHz' % (family['name'], target_mhz))
    fb, ref, pd1, pd2, freq, vco = best
    return {'fb': fb, 'ref': ref, 'pd1': pd1, 'pd2': pd2, 'freq_mhz': freq, 'vco_mhz': vco,
            'reg': encode(family, fb, ref, pd1, pd2)}


def post_pairs(family):
    """(PD1, PD2) pairs the family's PLL may use: 1..7 each, PD1 > PD2 or PD1 >= PD2."""
    out = []
    for pd1 in range(1, 8):
        for pd2 in range(1, pd1 + (1 if family['pll_pd_equal'] else 0)):
            out.append((pd1, pd2))
    return out


def encode(family, fb, ref, pd1, pd2):
    """Register 0x08 value (32-bit, big-endian byte order as sent)."""
    vco = REF_MHZ * fb / ref
    flag = 0x50 if (vco >= VCO_HIGH_MHZ and family['pll_vco_flag']) else 0x40
    if family['pll_pd_minus_one']:
        post = ((pd1 - 1) << 4) | (pd2 - 1)
    else:
        post = (pd1 << 4) | pd2
    return (flag << 24) | ((fb & 0xFF) << 16) | ((ref & 0xFF) << 8) | (post & 0xFF)


def decode(family, reg):
    """Frequency in MHz of a register 0x08 value, or None when the value is not a valid PLL word."""
    fb = (reg >> 16) & 0xFF
    ref = (reg >> 8) & 0xFF
    post = reg & 0xFF
    if family['pll_pd_minus_one']:
        pd1 = ((post >> 4) & 0x0F) + 1
        pd2 = (post & 0x0F) + 1
    else:
        pd1 = (post >> 4) & 0x0F
        pd2 = post & 0x0F
    if ref == 0 or pd1 == 0 or pd2 == 0 or fb == 0:
        return None
    return REF_MHZ * fb / (ref * pd1 * pd2)


def ramp(start_mhz, end_mhz, step_mhz=6.25):
    """Frequencies to pass through from start to end in steps of at most step_mhz (end included)."""
    out = []
    f = start_mhz
    if end_mhz >= start_mhz:
        while f + step_mhz < end_mhz:
            f += step_mhz
            out.append(f)
    else:
        while f - step_mhz > end_mhz:
            f -= step_mhz
            out.append(f)
    out.append(end_mhz)
    return out
