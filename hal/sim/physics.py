"""Hashboard physics of the simulator (shared/spec/sim-physics.md, v1): silicon, power, heat, air.

Pure and MicroPython-safe (math only; randomness comes from an injected RNG object with a
`random()` method). The simulator steps it in time; the autotuner's oracle calls
`rig_steady_state()` directly. Units are in names: _mhz, _v, _mv, _w, _c, _s.
"""

import math

# Normative constants (spec "Constants").
ALPHA = 1.5
VT_FRAC = 0.55
KAPPA = 0.0015       # 1/degC
T_REF_C = 60.0
S_ERR = 0.005
LEAK_SHARE = 0.08
V_SLOPE = 0.10
T_SLOPE_C = 30.0
ETA = 0.94           # PSU efficiency
SIGMA_F = 0.05
SIGMA_L = 0.3
AMBIENT_C = 25.0
STOCK_FAN_DUTY = 0.6
TAU_DIE_S = 30.0
TAU_FAN_S = 2.0
FAN_FLOOR = 0.03     # airflow fraction with every fan stopped
Z_CLIP = 3.0

# Spec "Noise and immersion": boards in coolant at t_amb, conductance g = 4*g_max whatever the
# fan outputs, fan power 0.
IMMERSION_G_FACTOR = 4.0

# Not in the spec: where the fixed-point iteration gives up and calls it thermal runaway.
T_RUNAWAY_C = 300.0

CONSTANTS = {
    'ALPHA': ALPHA, 'VT_FRAC': VT_FRAC, 'KAPPA': KAPPA, 'T_REF': T_REF_C, 'S_ERR': S_ERR,
    'LEAK_SHARE': LEAK_SHARE, 'V_SLOPE': V_SLOPE, 'T_SLOPE': T_SLOPE_C, 'ETA': ETA,
    'SIGMA_F': SIGMA_F, 'SIGMA_L': SIGMA_L, 'TAU_DIE_S': TAU_DIE_S, 'TAU_FAN_S': TAU_FAN_S,
    'FAN_FLOOR': FAN_FLOOR,
}


def calibrate(model):
    """Per-model constants (spec "Calibration") from a hal/models.py model dict.

    f_ref uses the spec's constant SIGMA_F (0.05), not the population's sigma option, so a
    wider or narrower population keeps the same median chip.
    """
    boards = model['boards']
    cpb = model['chips_per_board']
    n = boards * cpb
    domains = model['domains_per_board']
    v_nom = model['stock_board_mv'] / 1000.0 / domains
    f_nom = float(model['f_nom_mhz'])
    board_w = model['board_w']
    fan_w = model['fan_w']
    fans = model['fans']
    ctrl_w = model['ctrl_w']
    p_chip = (model['nameplate_w'] * ETA - boards * board_w
              - fans * fan_w * STOCK_FAN_DUTY ** 3 - ctrl_w) / n
    return {
        'model': model['name'], 'boards': boards, 'chips_per_board': cpb, 'chips': n,
        'domains_per_board': domains, 'cores_per_chip': model['cores_per_chip'],
        'f_nom_mhz': f_nom, 'v_nom': v_nom, 'stock_board_mv': model['stock_board_mv'],
        'board_w': board_w, 'fan_w': fan_w, 'fans': fans, 'ctrl_w': ctrl_w,
        'rpm_max': model['rpm_max'], 'voltage_per': model['voltage_per'],
        'p_chip_w': p_chip,
        'c0': (1.0 - LEAK_SHARE) * p_chip / (v_nom * v_nom * f_nom),
        'i0': LEAK_SHARE * p_chip / v_nom,
        'g_max': (cpb * p_chip + board_w) / (30.0 * STOCK_FAN_DUTY ** 0.8),
        'r_ja': 20.0 / p_chip,
        'f_ref_mhz': f_nom / (1.0 - 3.0 * SIGMA_F - 0.04),
    }


# ---------------------------------------------------------------- silicon population

def _gauss(rng):
    # Box-Muller: MicroPython's random has no gauss().
    u1 = rng.random()
    while u1 <= 1e-300:
        u1 = rng.random()
    u2 = rng.random()
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def _clip(z):
    return Z_CLIP if z > Z_CLIP else (-Z_CLIP if z < -Z_CLIP else z)


def make_chip(zf, zl, zc, sigma_f=SIGMA_F, sigma_l=SIGMA_L):
    """One chip's silicon from its three standard-normal draws (spec "Silicon variation")."""
    return {'zf': zf, 'zl': zl, 'zc': zc,
            'speed': 1.0 + sigma_f * zf,
            'leak': math.exp(sigma_l * (0.6 * zf + 0.8 * zl)),
            'cap': 1.0 + 0.03 * zc,
            'dead': False}


def population(cal, rng, sigma_f=SIGMA_F, sigma_l=SIGMA_L):
    """Rig population: list per board of chip dicts, drawn board by board in chain order.

    Each chip draws zf, zl, zc (in that order) from rng, each clipped to +-3.
    """
    out = []
    for _b in range(cal['boards']):
        chips = []
        for _i in range(cal['chips_per_board']):
            zf = _clip(_gauss(rng))
            zl = _clip(_gauss(rng))
            zc = _clip(_gauss(rng))
            chips.append(make_chip(zf, zl, zc, sigma_f, sigma_l))
        out.append(chips)
    return out


def apply_overrides(pop, overrides):
    """Per-chip overrides: list of dicts {'board', 'chip', and any of speed, leak, cap, dead}.

    Expresses weak chips (speed 0.8), leaky chips (leak 3.0), dead chips (dead True).
    """
    for o in overrides:
        chip = pop[o['board']][o['chip']]
        for key in ('speed', 'leak', 'cap', 'dead'):
            if key in o:
                chip[key] = o[key]
    return pop


def bimodal(pop, rng, fraction, speed_mult, leak_mult=1.0):
    """Make a random fraction of chips a second lot: speed and leak multiplied."""
    for chips in pop:
        for chip in chips:
            if rng.random() < fraction:
                chip['speed'] *= speed_mult
                chip['leak'] *= leak_mult
    return pop


# ---------------------------------------------------------------- per chip

def chip_fmax_mhz(cal, chip, v, t_c):
    """Highest error-free frequency of a chip at chip voltage v and die temperature t_c."""
    if chip['dead']:
        return 0.0
    v_nom = cal['v_nom']
    x = (v - VT_FRAC * v_nom) / (v_nom - VT_FRAC * v_nom)
    if x <= 0.0:
        return 0.0
    return cal['f_ref_mhz'] * chip['speed'] * x ** ALPHA * (1.0 - KAPPA * (t_c - T_REF_C))


def chip_err(f_mhz, fmax_mhz):
    """Fraction of bad hashes at frequency f for a chip whose limit is fmax."""
    if f_mhz <= 0.0:
        return 0.0
    if fmax_mhz <= 0.0:
        return 1.0
    x = -(f_mhz / fmax_mhz - 1.0) / S_ERR
    if x > 700.0:
        return 0.0
    if x < -700.0:
        return 1.0
    return 1.0 / (1.0 + math.exp(x))


def chip_power_w(cal, chip, v, f_mhz, t_c):
    """Dynamic (cap*c0*v^2*f) plus leakage power; a dead chip only leaks; v <= 0 draws nothing."""
    if v <= 0.0:
        return 0.0
    v_nom = cal['v_nom']
    leak = v * cal['i0'] * chip['leak'] * math.exp((v - v_nom) / (V_SLOPE * v_nom)) \
        * math.exp(min(60.0, (t_c - T_REF_C) / T_SLOPE_C))
    if chip['dead'] or f_mhz <= 0.0:
        return leak
    return chip['cap'] * cal['c0'] * v * v * f_mhz + leak


def chip_good_hs(cal, f_mhz, err):
    """Good hashes per second: f * cores * (1 - err)."""
    return f_mhz * 1e6 * cal['cores_per_chip'] * (1.0 - err)


def chip_v(cal, board_mv):
    """Chip voltage: board voltage shared by the series voltage domains."""
    return board_mv / 1000.0 / cal['domains_per_board']


# ---------------------------------------------------------------- air and heat

def immersed(cal):
    """A copy of calibrate()'s dict for a rig in coolant (spec "Noise and immersion"): every
    heat and power function then uses g = 4*g_max and no fan power; ambient = the coolant."""
    out = dict(cal)
    out['immersion'] = True
    return out


def airflow_g(cal, d):
    """Air conductance of a board (W/degC) at mean fan speed fraction d (floored at 0.03);
    in coolant (immersed(cal)) 4*g_max whatever the fans do."""
    if cal.get('immersion'):
        return IMMERSION_G_FACTOR * cal['g_max']
    if d < FAN_FLOOR:
        d = FAN_FLOOR
    return cal['g_max'] * d ** 0.8


def chip_pos(i, n):
    return (i + 0.5) / n


def board_heat(cal, powers_w, g, ambient_c, on=True):
    """Air temperature at each chip and the steady die temperatures for these powers.

    Returns (air_c list, die_c list, air rise over the whole board in degC).
    """
    n = len(powers_w)
    total = sum(powers_w) + (cal['board_w'] if on else 0.0)
    rise = total / g
    air = [ambient_c + rise * chip_pos(i, n) for i in range(n)]
    r_ja = cal['r_ja']
    die = [air[i] + r_ja * powers_w[i] for i in range(n)]
    return air, die, rise


def sensor_c(cal, powers_w, g, ambient_c, pos, on=True):
    """Board sensor reading (noise-free): air at pos plus half the mean chip self-heating."""
    n = len(powers_w)
    total = sum(powers_w) + (cal['board_w'] if on else 0.0)
    self_heat = cal['r_ja'] * sum(powers_w) / n if n else 0.0
    return ambient_c + total / g * pos + 0.5 * self_heat


def relax(x, target, dt_s, tau_s):
    """First-order step of x toward target over dt_s with time constant tau_s (exact)."""
    return target + (x - target) * math.exp(-dt_s / tau_s)


def board_steady_state(cal, chips, freqs_mhz, v, d, ambient_c, on=True, iters=200, tol_c=1e-6):
    """Steady state of one board: fixed-point iteration over die temperatures (leakage depends
    on T). chips: silicon dicts; freqs_mhz: per chip; v: chip voltage; d: fan speed fraction.

    Returns dict t_c, p_w, err, fmax_mhz, good_hs (per chip lists), sum_p_w, good_hs, air_rise_c,
    runaway (True when temperatures diverge; values are then those of the last iteration).
    """
    n = len(chips)
    g = airflow_g(cal, d)
    if not on:
        v = 0.0
    temps = [ambient_c] * n
    runaway = False
    powers = [0.0] * n
    for _ in range(iters):
        powers = [chip_power_w(cal, chips[i], v, freqs_mhz[i], temps[i]) for i in range(n)]
        _air, new, _rise = board_heat(cal, powers, g, ambient_c, on)
        delta = 0.0
        for i in range(n):
            dd = abs(new[i] - temps[i])
            if dd > delta:
                delta = dd
        temps = new
        if max(temps) > T_RUNAWAY_C:
            runaway = True
            break
        if delta < tol_c:
            break
    else:
        runaway = max(temps) > T_REF_C + 100.0
    fmaxs = [chip_fmax_mhz(cal, chips[i], v, temps[i]) for i in range(n)]
    errs = []
    good = []
    for i in range(n):
        f = freqs_mhz[i] if (v > 0.0 and not chips[i]['dead']) else 0.0
        e = chip_err(f, fmaxs[i])
        errs.append(e)
        good.append(chip_good_hs(cal, f, e))
    _air, _die, rise = board_heat(cal, powers, g, ambient_c, on)
    return {'t_c': temps, 'p_w': powers, 'err': errs, 'fmax_mhz': fmaxs, 'good_hs': good,
            'sum_p_w': sum(powers), 'good_hs_total': sum(good), 'air_rise_c': rise,
            'runaway': runaway}


def _per_board(value, boards):
    if isinstance(value, (list, tuple)):
        if len(value) != boards:
            raise ValueError('need one value per board (%d)' % boards)
        return list(value)
    return [value] * boards


def wall_power_w(cal, sum_chip_w, boards_on, fan_duties):
    """Wall power: (chips + board overheads + fans (duty^3) + control board) / ETA; no fan
    power in coolant."""
    fans_w = 0.0
    for duty in (() if cal.get('immersion') else fan_duties):
        fans_w += cal['fan_w'] * duty ** 3
    return (sum_chip_w + boards_on * cal['board_w'] + fans_w + cal['ctrl_w']) / ETA


def rig_steady_state(cal, pop, freqs_mhz, board_mv, fan_duty=STOCK_FAN_DUTY,
                     ambient_c=AMBIENT_C, enabled=True):
    """Full steady state of a rig (the oracle's model).

    cal: calibrate(model); pop: population() (list per board of chip dicts);
    freqs_mhz: scalar, or per board a scalar or a per-chip list;
    board_mv: scalar (the rig rail) or per board list; fan_duty: fraction 0..1, scalar or per
    fan (at steady state the fans run at duty * rpm_max, so d = mean duty);
    enabled: bool or per board list.

    Returns dict boards (list of board_steady_state() dicts plus v_chip, board_mv, enabled),
    sum_chip_w, wall_w, good_ths, j_per_th, hottest_c, runaway.
    """
    boards = cal['boards']
    f_b = _per_board(freqs_mhz, boards)
    mv_b = _per_board(board_mv, boards)
    en_b = _per_board(enabled, boards)
    duties = list(fan_duty) if isinstance(fan_duty, (list, tuple)) else [fan_duty] * cal['fans']
    d = sum(duties) / len(duties)
    out = []
    total_w = 0.0
    good = 0.0
    hottest = -1e9
    runaway = False
    on_count = 0
    for b in range(boards):
        chips = pop[b]
        f = f_b[b]
        if not isinstance(f, (list, tuple)):
            f = [f] * len(chips)
        on = bool(en_b[b]) and mv_b[b] > 0
        v = chip_v(cal, mv_b[b]) if on else 0.0
        st = board_steady_state(cal, chips, f, v, d, ambient_c, on)
        st['v_chip'] = v
        st['board_mv'] = mv_b[b]
        st['enabled'] = on
        out.append(st)
        if on:
            on_count += 1
        total_w += st['sum_p_w']
        good += st['good_hs_total']
        hottest = max(hottest, max(st['t_c']))
        runaway = runaway or st['runaway']
    wall = wall_power_w(cal, total_w, on_count, duties)
    ths = good / 1e12
    return {'boards': out, 'sum_chip_w': total_w, 'wall_w': wall, 'good_ths': ths,
            'j_per_th': wall / ths if ths > 0 else None, 'hottest_c': hottest,
            'runaway': runaway}


def poisson(rng, lam):
    """Poisson draw (Knuth below 30, normal approximation above)."""
    if lam <= 0.0:
        return 0
    if lam < 30.0:
        limit = math.exp(-lam)
        k = 0
        p = rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    k = int(rng.gauss(lam, math.sqrt(lam)) + 0.5)
    return k if k > 0 else 0
