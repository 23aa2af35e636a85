"""Tuner maths (pure; MicroPython-safe: math only, plain functions).

Error counts are Poisson, so a chip's error rate is judged from counts over an exposure of hashes
(counter units of 2^32 hashes), never from one noisy percentage. Near its limit a chip's error rate
grows about e-fold per ERR_EFOLD of frequency (family characterisation), which turns a measured
rate into a frequency step. The voltage loop works on log power with a secant slope that starts
from the family's V-F prior.
"""

import math

TWO32 = 4294967296.0
ERR_EFOLD = 0.005        # relative frequency change per e-fold of error rate near the limit
VF_VT_FRAC = 0.55        # family V-F prior: fmax ~ (v - VT_FRAC*v_nom)^VF_ALPHA
VF_ALPHA = 1.5
NONCE_FRAME_BYTES = 11
UART_BITS_PER_BYTE = 10


def wall_for_heat_w(heat_w, heat_share):
    """Wall power that puts heat_w into the room: heat = wall x heat_share (1 with the whole
    miner in the room: every wall watt ends as heat; 0.94, the PSU efficiency, with the PSU
    outside). Heat mode is power mode at this wall budget."""
    return heat_w / heat_share


def ticket_bits(hashrate_hs, baud, time_scale=1.0, share=0.25, frame_bytes=NONCE_FRAME_BYTES,
                lo=6, hi=24):
    """Smallest ticket difficulty bits N so nonce traffic (one frame per 2^(32+N) hashes) uses at
    most `share` of the UART. Hashrate is in physics time; the wire runs in wall time, so a
    simulator K x faster than real time needs K x more wire (time_scale)."""
    frames_s_max = share * baud / float(UART_BITS_PER_BYTE * frame_bytes)
    units_s = hashrate_hs * time_scale / TWO32
    if units_s <= 0:
        return lo
    n = int(math.ceil(math.log(units_s / frames_s_max) / math.log(2.0))) if units_s > frames_s_max else 0
    return max(lo, min(hi, n))


def err_estimate(errors, exposure_units):
    """Error fraction with a half-count continuity correction (never 0, so logs are defined)."""
    if exposure_units <= 0:
        return None
    return (errors + 0.5) / exposure_units


def poisson_upper(count, z=2.0):
    """Approximate upper bound of a Poisson mean given an observed count (z sigma)."""
    return count + z * math.sqrt(count + 1.0) + z * z * 0.5


def decision_ready(errors, exposure_units, err_target, min_count):
    """Enough data to move: the count expected at the target reached, or errors clearly many."""
    return exposure_units * err_target >= min_count or errors >= min_count


def freq_step(errors, exposure_units, err_target, gain=0.8, step_max=0.03, efold=ERR_EFOLD):
    """Relative frequency step that brings a chip's error rate to err_target."""
    e = err_estimate(errors, exposure_units)
    if e is None:
        return 0.0
    if e >= 0.5:
        return -step_max
    s = gain * efold * math.log(err_target / e)
    if s > step_max:
        s = step_max
    elif s < -step_max:
        s = -step_max
    return s


def clearly_above(errors, exposure_units, err_limit, z=2.0):
    """True when the count is incompatible with an error rate <= err_limit (z sigma)."""
    mean = err_limit * exposure_units
    return errors > mean + z * math.sqrt(mean + 1.0) + 1.0


def vf_ratio(v_new, v_old, v_nom):
    """Prior ratio of chip fmax at chip voltage v_new over v_old."""
    a = VF_VT_FRAC * v_nom
    if v_old <= a or v_new <= a:
        return 1.0
    return ((v_new - a) / (v_old - a)) ** VF_ALPHA


def dlnp_dlnv(v, v_nom):
    """Prior sensitivity of rig power to chip voltage with every chip tracking its limit."""
    a = VF_VT_FRAC * v_nom
    if v <= a:
        return 2.0
    return 2.0 + VF_ALPHA * v / (v - a)


def dlng_dlnv(v, v_nom):
    """Prior sensitivity of good hashrate to chip voltage (chips tracking their limit)."""
    a = VF_VT_FRAC * v_nom
    if v <= a:
        return 1.0
    return VF_ALPHA * v / (v - a)


def secant_slope(x0, y0, x1, y1, prior, lo_frac=0.3, hi_frac=3.0):
    """dy/dx from two points, kept within [lo_frac, hi_frac] x prior (noise guard)."""
    if abs(x1 - x0) < 1e-12:
        return prior
    s = (y1 - y0) / (x1 - x0)
    lo = prior * lo_frac
    hi = prior * hi_frac
    return lo if s < lo else (hi if s > hi else s)


def next_voltage_mv(mv, measured, target, slope, step_mv, mv_min, mv_max, max_frac=0.05):
    """Voltage move so that ln(measured) reaches ln(target) with d ln y / d ln v = slope.

    Rounded down to the setpoint step (never overshoot a budget by rounding), clamped.
    """
    if measured <= 0 or target <= 0 or slope <= 0:
        return mv
    dlnv = math.log(target / measured) / slope
    if dlnv > max_frac:
        dlnv = max_frac
    elif dlnv < -max_frac:
        dlnv = -max_frac
    want = mv * math.exp(dlnv)
    out = int(math.floor(want / step_mv + 1e-9)) * step_mv
    if out < mv_min:
        out = mv_min
    if out > mv_max:
        out = mv_max
    return out


def mean(xs):
    return sum(xs) / len(xs) if xs else None


def eta_s(done_frac, elapsed_s):
    """Remaining time from progress so far (None until there is some progress)."""
    if done_frac <= 0.01 or elapsed_s <= 0:
        return None
    return elapsed_s * (1.0 - done_frac) / done_frac


def ema_weight(dt_s, tau_s):
    """Weight of a new sample in an exponential average with time constant tau_s, dt_s after
    the last one (1 for the first sample)."""
    if dt_s is None or dt_s <= 0.0:
        return 1.0 if dt_s is None else 0.0
    return 1.0 - math.exp(-dt_s / tau_s)


def line_fit(xs, ys):
    """Least-squares line through (xs, ys): (slope, intercept), or None when the xs do not vary."""
    n = len(xs)
    if n < 2:
        return None
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) * (x - mx) for x in xs)
    if sxx <= 0.0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx
