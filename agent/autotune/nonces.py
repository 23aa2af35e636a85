"""Tuning from verified nonces only (pure; MicroPython-safe: math only, plain functions).

Real firmware cannot assume the chips' hash counters; it always sees the nonces it verifies. A
chip at ticket difficulty 2^N reports one nonce per 2^(32+N) hashes, so per chip

    nonce rate (1/s) = hashrate (H/s) / 2^(32+N)

and a wrong nonce (fails SHA-256d) is one hardware error event. Counts are Poisson: a decision
is taken only when the confidence interval of the chip's error fraction excludes the target
(then the step goes only as far as the nearer bound allows) or is narrow enough that the chip
counts as settled. The ticket difficulty is the lowest whose nonce traffic fits a share of the
UART (docs/autotune.md, "Measuring from nonces"); the window a decision needs follows from the
wanted frequency resolution, capped (when the cap binds a decision is coarser: a point
estimate at half gain, see capped_step).
"""

import math

from agent.autotune import maths

TWO32 = 4294967296.0
Z = 2.0                    # one-sided normal quantile of the bounds (97.7 %)
RES = 0.006                # wanted frequency resolution (relative): the tuner's settled step
UART_SHARE = 0.25          # nonce traffic at most this share of the baud (at the highest clock)
WINDOW_MAX_S = 600.0       # a chip's decision window never exceeds this (physics s)
MIN_BRACKET_STEP = 0.01    # no errors and the bound below target: climb at least this, doubling
MAX_STEP = 0.04
STEP_MAX = 0.03            # largest step from the error statistics
XCHECK_MIN_EXPECTED = 1000.0  # cross-check spans of this many nonces expected from the counters
XCHECK_Z = 4.0


# -- Poisson bounds ------------------------------------------------------------------------------
def poisson_lower(k, z=Z):
    """Lower one-sided bound of a Poisson mean from an observed count k (Byar's approximation;
    0 for k = 0)."""
    if k <= 0:
        return 0.0
    k = float(k)
    b = 1.0 - 1.0 / (9.0 * k) - z / (3.0 * math.sqrt(k))
    return k * b * b * b if b > 0 else 0.0


def poisson_upper(k, z=Z):
    """Upper one-sided bound of a Poisson mean from an observed count k (Byar's approximation)."""
    k1 = float(max(0, k)) + 1.0
    b = 1.0 - 1.0 / (9.0 * k1) + z / (3.0 * math.sqrt(k1))
    return k1 * b * b * b


def err_bounds(bad, total, z=Z):
    """(low, high) bounds of a chip's error fraction from bad of total verified nonces."""
    if total <= 0:
        return None
    hi = poisson_upper(bad, z) / total
    return poisson_lower(bad, z) / total, (1.0 if hi > 1.0 else hi)


def rate_bounds(count, dt_s, z=Z):
    """(low, high) bounds of a nonce rate (1/s) from count nonces in dt_s."""
    if dt_s <= 0:
        return None
    return poisson_lower(count, z) / dt_s, poisson_upper(count, z) / dt_s


def hashrate_hs(count, dt_s, ticket_bits):
    """Hashrate estimate from count nonces in dt_s at ticket difficulty 2^N."""
    if dt_s <= 0:
        return None
    return count * TWO32 * (1 << ticket_bits) / dt_s


# -- the plan: difficulty, UART load, nonces per decision, window ----------------------------------
def nonce_rate_s(hashrate, ticket_bits):
    return hashrate / (TWO32 * (1 << ticket_bits))


def uart_load(frames_s, baud, frame_bytes=maths.NONCE_FRAME_BYTES):
    """Share of the UART that frames_s nonce frames (wall time) use."""
    return frames_s * frame_bytes * maths.UART_BITS_PER_BYTE / float(baud)


def errors_needed(z=Z, res=RES, efold=maths.ERR_EFOLD):
    """Errors a decision needs: the bounds span about +-z/sqrt(k) in ln(error), i.e. +-efold*z/sqrt(k)
    of frequency; res of frequency needs k = (z*efold/res)^2, and a chip with no errors must
    reach an upper bound below any target (poisson_upper(0))."""
    k = (z * efold / res) ** 2
    return max(k, poisson_upper(0, z))


def nonces_per_decision(err_target, z=Z, res=RES, efold=maths.ERR_EFOLD):
    return int(math.ceil(1.1 * errors_needed(z, res, efold) / err_target))


def resolution(bad, z=Z, efold=maths.ERR_EFOLD):
    """Frequency resolution (relative, half width) that bad errors give; None with no errors."""
    lo = poisson_lower(bad, z)
    if lo <= 0:
        return None
    return 0.5 * efold * math.log(poisson_upper(bad, z) / lo)


def host_bits(chain_hs, host_rate_s, time_scale=1.0):
    """Lowest difficulty whose nonces (wall time) the host can verify: host_rate_s per second
    for this chain (0 = no limit)."""
    if not host_rate_s or chain_hs <= 0:
        return 0
    units = chain_hs * time_scale / TWO32
    return max(0, int(math.ceil(math.log(units / host_rate_s) / math.log(2.0)))) \
        if units > host_rate_s else 0


def plan(chain_hs, chips, baud, time_scale=1.0, share=UART_SHARE, err_target=0.002, z=Z,
         res=RES, window_max_s=WINDOW_MAX_S, frame_bytes=maths.NONCE_FRAME_BYTES,
         host_rate_s=0.0):
    """Ticket difficulty and measurement window of one chain.

    chain_hs: the chain's hashrate at its highest allowed clock (the UART must carry that);
    time_scale: a simulator's physics speed-up (the wire runs in wall time). The lowest
    difficulty N whose frames fit `share` of the baud (maths.ticket_bits) and that the host can
    verify (host_rate_s: this chain's verified nonces per wall second, 0 = no limit) gives the
    most nonces,
    hence the shortest window for the errors a decision needs; the window is capped, and when
    the cap binds a decision sees fewer errors: res_at_cap says how coarse it gets (None: a chip
    at the target may see no error at all inside the cap, so it holds where it is)."""
    bits = maths.ticket_bits(chain_hs, baud, time_scale, share, frame_bytes, lo=0, hi=24)
    cpu = min(24, host_bits(chain_hs, host_rate_s, time_scale))
    bound = 'host' if cpu > bits else 'uart'
    bits = max(bits, cpu)
    per_chip_hs = chain_hs / float(max(1, chips))
    rate = nonce_rate_s(per_chip_hs, bits)
    need = nonces_per_decision(err_target, z, res)
    window = need / rate if rate > 0 else None
    binds = window is None or window > window_max_s
    k_cap = rate * window_max_s * err_target
    res_cap = resolution(int(k_cap), z) if binds else res
    return {'ticket_bits': bits, 'nonce_rate_chip_s': rate,
            'uart_load': uart_load(nonce_rate_s(chain_hs, bits) * time_scale, baud, frame_bytes),
            'nonces_per_decision': need, 'window_s': window, 'window_max_s': window_max_s,
            'cap_binds': binds, 'res_at_cap': res_cap, 'z': z, 'res': res, 'bound': bound}


# -- the decision rule -------------------------------------------------------------------------------
def decide(bad, total, err_target, z=Z, res=RES, efold=maths.ERR_EFOLD, step_max=STEP_MAX):
    """Step from bad of total nonces: +x (every error fraction the data allow is below the
    target: climb as far as the upper bound allows), -x (even the lower bound is above it: step
    down as far as the lower bound asks), 0.0 (the target is inside the bounds and they resolve
    `res` of frequency: settled), None (the bounds are too wide to say: keep counting)."""
    b = err_bounds(bad, total, z)
    if b is None:
        return None
    lo, hi = b
    if hi < err_target:
        s = efold * math.log(err_target / hi)
        return s if s < step_max else step_max
    if lo > err_target:
        if lo >= 0.5:
            return -step_max
        s = -efold * math.log(lo / err_target)
        return s if s > -step_max else -step_max
    r = resolution(bad, z, efold)
    return 0.0 if r is not None and r <= res else None


def capped_step(bad, total, err_target):
    """The window cap bound before the bounds could decide: a coarser decision on the point
    estimate at half gain (errors seen), a small climb when at least one error was expected at
    the target and none came (below it with ~63 % confidence only), else hold where it is."""
    if bad >= 1:
        return maths.freq_step(bad, total, err_target, gain=0.5)
    if total * err_target >= 1.0:
        return 0.5 * MIN_BRACKET_STEP
    return 0.0


def chip_step(st, h, e, now_s, t, hold):
    """The tuner's per-chip step from nonce counts (search.py calls it for the nonce source).

    Looks at n_dec, 2 n_dec, 4 n_dec ... nonces (log-spaced looks keep repeated testing from
    inflating the false-step rate), early when errors are clearly many, and at the window cap
    (then capped_step: a coarser decision). Returns the relative step or None."""
    p = t.nonce_plan
    need = p['nonces_per_decision']
    if getattr(st, 'n_look', None) is None or st.n_key != (st.h0, st.e0):
        st.n_key = (st.h0, st.e0)          # a new window (baseline taken anew)
        st.n_look = need
    capped = st.t0 is not None and now_s - st.t0 >= p['window_max_s']
    if h < st.n_look and not capped:
        # early only when errors are clearly many (even the lower bound above the target)
        if e < t.prof['min_err_count'] or poisson_lower(e, p['z']) <= t.err_t * h:
            return None
    st.err_est = maths.err_estimate(e, h)
    st.err_n = e
    st.err_f = st.f
    st.bad = maths.clearly_above(e, h, t.err_max)
    step = decide(e, h, t.err_t, p['z'], p['res'])
    st.n_look = 2 * max(h, st.n_look)
    if step is None and not capped:
        return None
    if capped:
        st.t0 = now_s           # one capped decision per cap period; the counts go on
    if step is None:
        step = capped_step(e, h, t.err_t)
        t.nonce_stats['capped'] += 0 if hold else 1
    if step > 0 and e == 0 and not hold:
        st.zero_runs += 1       # no error at all: bracket upward (doubling) while it lasts
        step = min(MAX_STEP, max(step, MIN_BRACKET_STEP * (1 << min(st.zero_runs - 1, 2))))
    else:
        st.zero_runs = 0
    if not hold:
        t.nonce_stats['decisions'] += 1
        t.nonce_stats['nonces'] += h
    return step


class CrossCheck:
    """Counters as an optional cross-check of the nonce counts: over spans at one frequency, the
    nonces a chip sent must be compatible (XCHECK_Z bounds) with the hashes its counters saw
    (units of 2^32 hashes / 2^N). Disagreements are counted and returned for a log line."""

    def __init__(self, z=XCHECK_Z, min_expected=XCHECK_MIN_EXPECTED):
        self.z = z
        self.min_expected = min_expected
        self.ref = {}
        self.read = {}
        self.checked = 0
        self.disagree = 0
        self.missing = 0.0         # nonces short of the counters, summed over disagreements
        self.extra = 0.0           # nonces beyond them (double counting, misattribution)
        self.last = None

    def restart(self, key):
        """A frequency request for chip `key`: the driver restarts its counter window (and
        drops the window the request falls in) even when the frequency stays the same."""
        self.ref.pop(key, None)

    def update(self, key, freq_mhz, counter_units, nonces, ticket_bits, read_s=None):
        """One observation of chip `key`; returns (expected, observed) on a disagreement.

        read_s: when the counters were last read (the driver's window end). Counters move only
        at reads while nonces arrive all the time, so an observation without a fresh read (a
        read that timed out) is skipped: it would compare nonces up to now with counts from a
        poll or more ago."""
        if read_s is not None:
            if self.read.get(key) == read_s:
                return None
            self.read[key] = read_s
        r = self.ref.get(key)
        state = (freq_mhz, ticket_bits)
        if r is None or r[0] != state:
            # a new span: skip one observation (the counter window spanning the change is
            # dropped by the driver, the nonces in it are not)
            self.ref[key] = (state, None, None)
            return None
        if r[1] is None:
            self.ref[key] = (state, counter_units, nonces)
            return None
        expected = (counter_units - r[1]) / float(1 << ticket_bits)
        if expected < self.min_expected:
            return None
        observed = nonces - r[2]
        self.ref[key] = (state, counter_units, nonces)
        self.checked += 1
        if poisson_upper(observed, self.z) < expected or poisson_lower(observed, self.z) > expected:
            self.disagree += 1
            self.last = (key, expected, observed)
            if observed < expected:
                self.missing += expected - observed
            else:
                self.extra += observed - expected
            return expected, observed
        return None

    def get_status(self):
        return {'checked': self.checked, 'disagree': self.disagree,
                'missing': round(self.missing, 1), 'extra': round(self.extra, 1),
                'last_disagreement': None if self.last is None else
                {'expected': round(self.last[1], 1), 'observed': self.last[2]}}
