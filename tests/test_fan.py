"""Fan PID and FanControl against a small first-order plant (die tau 30 s, fan lag 2 s)."""

import math

import pytest

from agent.fan import PID, FanControl


class Plant:
    """Hottest die of one S21-like board: T -> amb + rise(d) + self, fans lag the duty."""

    def __init__(self, t_c=50.0, d=0.6, amb_c=25.0):
        self.t_c, self.d, self.amb_c = t_c, d, amb_c

    def steady_c(self, d):
        return self.amb_c + 30.0 * (0.6 / max(d, 0.03)) ** 0.8 + 20.0

    def step(self, duty_pct, dt):
        self.d += (duty_pct / 100.0 - self.d) * (1.0 - math.exp(-dt / 2.0))
        self.t_c += (self.steady_c(self.d) - self.t_c) * (1.0 - math.exp(-dt / 30.0))
        return self.t_c


def run(fc, plant, seconds, dt, t0=0.0, amb=None):
    out = []
    t = t0
    while t < t0 + seconds:
        if amb is not None:
            plant.amb_c = amb(t)
        duty = fc.update(t, die_c=plant.t_c)
        plant.step(duty, dt)
        out.append((t, plant.t_c, duty))
        t += dt
    return out


def settle_time(hist, target, band):
    """First time after which every sample stays within target +- band (None if never)."""
    for k in range(len(hist)):
        if all(abs(h[1] - target) <= band for h in hist[k:]):
            return hist[k][0]
    return None


@pytest.mark.parametrize('dt', [1.0, 2.0])
@pytest.mark.parametrize('t0_c,amb_c', [(50.0, 25.0), (90.0, 25.0), (60.0, 35.0), (70.0, 15.0)])
def test_settles_within_2c_without_oscillation(dt, t0_c, amb_c):
    fc = FanControl(75.0)
    plant = Plant(t_c=t0_c, amb_c=amb_c)
    hist = run(fc, plant, 900, dt)
    ts = settle_time(hist, 75.0, 2.0)
    assert ts is not None and ts < 300, ts
    late = [h for h in hist if h[0] >= 600]
    # No oscillation: late on, temperature and duty are flat.
    assert max(h[1] for h in late) - min(h[1] for h in late) < 0.2
    assert max(h[2] for h in late) - min(h[2] for h in late) < 1.0
    # Count target crossings after settling: a limit cycle would cross again and again.
    crossings = sum(1 for a, b in zip(hist, hist[1:]) if a[0] >= ts and (a[1] - 75.0) * (b[1] - 75.0) < 0)
    assert crossings <= 2


def test_reverse_acting_hotter_means_more_duty():
    fc = FanControl(75.0, start_pct=50.0, rate_pct_s=100.0)
    cold = fc.update(0.0, die_c=60.0)
    fc2 = FanControl(75.0, start_pct=50.0, rate_pct_s=100.0)
    hot = fc2.update(0.0, die_c=90.0)
    assert hot > 50.0 > cold or (hot >= 50.0 and cold <= 50.0)
    assert fc2.update(1.0, die_c=90.0) > fc.update(1.0, die_c=60.0)


def test_recovers_from_windup_after_saturation():
    """Hot ambient saturates the fans at 100 % for 10 minutes; then it cools off. A wound-up
    integral would keep the fans pinned and drive the die far below target."""
    fc = FanControl(75.0)
    plant = Plant(t_c=75.0, amb_c=25.0)
    amb = lambda t: 45.0 if 100.0 <= t < 700.0 else 25.0
    hist = run(fc, plant, 1500, 1.0, amb=amb)
    sat = [h for h in hist if 300 <= h[0] < 700]
    assert all(h[2] >= 99.5 for h in sat)          # it did saturate
    assert all(h[1] > 77.0 for h in sat)           # and could not hold the target
    after = [h for h in hist if h[0] >= 700]
    # Leaves saturation promptly once the error changes sign...
    first_below = next(h[0] for h in after if h[1] < 75.0)
    assert any(h[2] < 90.0 for h in after if h[0] <= first_below + 30)
    # ...without a deep undershoot, and settles back.
    assert min(h[1] for h in after) > 71.0
    ts = settle_time(hist, 75.0, 2.0)
    assert ts is not None and ts < 1000


def test_pid_integral_clamped_and_rate_limited():
    pid = PID(kp=4.0, ki=1.0, out_min=20.0, out_max=100.0, rate_pct_s=10.0, start=50.0)
    outs = [pid.update(80.0, 75.0, float(t)) for t in range(0, 300)]
    # Rate limit: +10 %/s at most.
    assert all(b - a <= 10.0 + 1e-9 for a, b in zip(outs, outs[1:]))
    assert outs[-1] == 100.0
    # 300 s at +5 degC with ki = 1 would integrate to 1500 %: the integral stopped where P + I
    # reached the limit instead.
    assert pid.i_term <= 100.0 - pid.p_term + 1e-9
    # Error flips: output leaves 100 on the first step (rate-limited), no windup delay.
    nxt = pid.update(74.0, 75.0, 300.0)
    assert nxt == pytest.approx(90.0)
    assert pid.update(74.0, 75.0, 301.0) == pytest.approx(80.0)


def test_derivative_on_measurement_no_setpoint_kick():
    pid = PID(kp=0.0, ki=0.0, kd=10.0, out_min=0.0, out_max=100.0, rate_pct_s=1000.0,
              d_filter_s=0.0, start=50.0)
    pid.update(70.0, 75.0, 0.0)
    a = pid.update(70.0, 60.0, 1.0)   # setpoint jump, measurement flat: no derivative kick
    assert a == pytest.approx(50.0)
    b = pid.update(72.0, 60.0, 2.0)   # measurement rising 2 degC/s: more duty
    assert b == pytest.approx(70.0)


def test_manual_mode_and_validation():
    fc = FanControl(75.0)
    with pytest.raises(ValueError):
        fc.set_mode('turbo')
    with pytest.raises(ValueError):
        fc.set_mode('manual')             # needs a duty
    with pytest.raises(ValueError):
        fc.set_mode('manual', 120)
    with pytest.raises(ValueError):
        fc.set_mode('manual', 'x')
    with pytest.raises(ValueError):
        fc.set_mode('auto', 50)
    assert fc.mode == 'auto'
    fc.set_mode('manual', 70)
    assert fc.update(0.0, die_c=90.0) == 70.0
    assert fc.update(1.0, die_c=90.0, override_pct=100.0) == 100.0   # safety wins
    assert fc.update(2.0, die_c=90.0) == 70.0
    fc.set_mode('auto')
    # Bumpless: auto starts from the manual duty, then moves at the rate limit.
    d = fc.update(3.0, die_c=75.0)
    assert abs(d - 70.0) <= 10.0 + 1e-9


def test_no_trusted_measurement_means_full_duty():
    fc = FanControl(75.0, max_pct=90.0)
    assert fc.update(0.0, die_c=None) == 90.0
    assert fc.update(1.0, die_c=float('nan')) == 90.0


def test_override_release_is_rate_limited():
    fc = FanControl(75.0, rate_pct_s=5.0)
    for t in range(60):
        fc.update(float(t), die_c=75.0)
    base = fc.duty_pct
    assert fc.update(60.0, die_c=70.0, override_pct=100.0) == 100.0
    d = fc.update(61.0, die_c=70.0)
    assert 95.0 - 1e-9 <= d < 100.0 and base < 95.0


def test_board_source_and_from_config():
    fc = FanControl.from_config({'source': 'board', 'min_pct': 30}, 75.0)
    assert fc.source == 'board' and fc.target_c == 60.0 and fc.min_pct == 30.0
    assert fc.update(0.0, die_c=99.0, board_c=None) == 100.0  # board mode ignores dies
    with pytest.raises(ValueError, match='fan.kp'):
        FanControl.from_config({'kp': -1}, 75.0)
    with pytest.raises(ValueError, match='fan.wobble'):
        FanControl.from_config({'wobble': 1}, 75.0)
    with pytest.raises(ValueError, match='min_pct'):
        FanControl.from_config({'min_pct': 90, 'max_pct': 50}, 75.0)
