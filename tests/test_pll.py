"""PLL solver (hal/pll.py) and family helpers: known answer, round trips, ramp, ticket mask."""

import pytest
from hypothesis import given, strategies as st

from hal import families, pll

PLL_FAMILIES = ['BM1362', 'BM1366', 'BM1368', 'BM1370', 'BM1397']


def test_bm1366_485_mhz_known_answer():
    s = pll.solve(families.get('BM1366'), 485)
    assert s['reg'] == 0x50C20240
    assert s['reg'].to_bytes(4, 'big') == bytes.fromhex('50 C2 02 40')
    assert abs(s['freq_mhz'] - 485.0) < 1e-9


@pytest.mark.parametrize('name', PLL_FAMILIES)
@given(target=st.floats(50.0, 800.0))
def test_solve_decode_round_trip_in_fb_range(name, target):
    fam = families.get(name)
    s = pll.solve(fam, target)
    assert fam['pll_fb_min'] <= s['fb'] <= fam['pll_fb_max']
    assert 1 <= s['pd2'] <= s['pd1'] <= 7 and s['ref'] in (1, 2)
    assert s['pd1'] > s['pd2'] or fam['pll_pd_equal']
    assert abs(pll.decode(fam, s['reg']) - s['freq_mhz']) < 1e-9
    assert ((s['reg'] >> 24) & 0x10 != 0) == (s['vco_mhz'] >= 2400.0 and fam['pll_vco_flag'])
    # Closest realisable frequency: no other candidate is nearer.
    best = min(abs(25.0 * fb / (ref * p1 * p2) - target)
               for ref in (1, 2) for p1, p2 in pll.post_pairs(fam)
               for fb in range(fam['pll_fb_min'], fam['pll_fb_max'] + 1))
    assert abs(s['freq_mhz'] - target) <= best + 1e-6


def test_solve_out_of_range_raises():
    with pytest.raises(ValueError):
        pll.solve(families.get("BM1368"), 10000)


@given(a=st.floats(50, 800), b=st.floats(50, 800))
def test_ramp_steps_bounded(a, b):
    steps = pll.ramp(a, b, 6.25)
    assert steps[-1] == b
    prev = a
    for s in steps:
        assert abs(s - prev) <= 6.25 + 1e-9
        prev = s


@given(bits=st.integers(0, 32))
def test_ticket_mask_inverse(bits):
    v = families.ticket_mask_value(bits)
    assert families.ticket_bits_from_mask(v) == bits


def test_ticket_mask_known_values():
    assert families.ticket_mask_value(8) == 0x000000FF
    assert families.ticket_mask_value(9) == 0x000080FF  # 0x1FF, byte 0x01 reversed = 0x80


@given(t=st.floats(-40, 150))
def test_temperature_code_round_trip(t):
    code = families.temp_code_from_c(t)
    assert abs(families.temp_c_from_code(code) - t) <= families.TEMP_SLOPE_C / 2 + 1e-9
    assert families.temp_c_from_code(code & 0x7FFFFFFF) is None


@pytest.mark.parametrize('n,rule,step', [(108, 'pow2', 2), (126, 'pow2', 2), (65, 'pow2', 2),
                                         (1, 'pow2', 256), (108, 'even', 2), (65, 'even', 3),
                                         (126, 'even', 2), (60, 'even', 4), (60, 'pow2', 4)])
def test_address_interval(n, rule, step):
    assert families.address_interval(n, rule) == min(step, 256)


# Known answers from real traffic (docs/protocol-notes.md): factory firmware PLL writes in
# mujina's S19j Pro (BM1362) and S21 Pro (BM1370) captures, ESP-Miner's PLL unit test (BM1397).
@pytest.mark.parametrize('name, mhz, word', [
    ('BM1362', 56.25, 0x40A20255),   # S19j Pro ramp start: 6 x 6 post dividers (PD1 = PD2)
    ('BM1362', 525.0, 0x40A80230),   # S19j Pro target
    ('BM1370', 600.0, 0x50C00230),   # S21 Pro target: VCO exactly 2400 MHz carries 0x50
    ('BM1370', 525.0, 0x40A80230),   # lowest VCO rule (ESP-Miner #1051) at the Bitaxe's 525 MHz
    ('BM1397', 450.0, 0x40480221),   # ESP-Miner test_pll.c: fb 72, ref 2, pd 2/1, raw dividers
])
def test_pll_words_from_real_drivers(name, mhz, word):
    assert pll.solve(families.get(name), mhz)['reg'] == word


def test_post_divider_rule_per_family():
    # ESP-Miner restored PD1 > PD2 for BM1368/70 (#1051); factory BM1362 firmware writes 6 x 6.
    assert not families.get('BM1370')['pll_pd_equal'] and families.get('BM1362')['pll_pd_equal']
    s = pll.solve(families.get('BM1370'), 56.25)
    assert s['pd1'] > s['pd2'] and s['freq_mhz'] == 56.25
