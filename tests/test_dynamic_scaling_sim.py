"""Dynamic scaling through the simulator: an S21 (own process, time-warped) under an ambient step
25 -> 45 -> 25 C. The safety supervisor derates; with `[tuner] dynamic_scaling = true` the chips
are re-planned per board at the cap's budget (hot chips give up frequency, the rest keep it), and
climb back when it cools; no trip. The same run with the flat cap gives the comparison figure
(with HASHPILOT_DYN_COMPARE=1; `pytest -s` prints a SCENARIO line; a figure, not an assertion:
see the note at the end)."""

import os

import pytest

from tests.test_safety_scenarios import DANGER_C, close, mean_f, report, scenario

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

UP_S, DOWN_S, END_S = 100.0, 900.0, 1500.0


def spread(line):
    """Largest relative spread of the chips' frequencies within one board."""
    out = 0.0
    for b in line['boards']:
        fs = [f for f in b['f_mhz'] if f > 0]
        if fs:
            out = max(out, (max(fs) - min(fs)) / max(fs))
    return out


def run(tmp_path, dynamic):
    faults = ['ambient:to_c=45,at=%g,ramp_s=60' % UP_S, 'ambient:to_c=25,at=%g,ramp_s=60' % DOWN_S]
    extra = '[tuner]\ndynamic_scaling = %s\n' % ('true' if dynamic else 'false')
    tmp_path.mkdir()
    sim, broker, rec, agent, truth = scenario(tmp_path, faults, time_scale=20, extra_cfg=extra)
    try:
        lines = truth.wait_until(END_S, 240, agent)
        tele = list(rec.of('telemetry'))
        return lines, tele
    finally:
        close(agent, rec, broker, sim)


def hot_window(lines):
    return [l for l in lines if UP_S + 60 + 240 <= l['t_s'] <= DOWN_S]


def test_dynamic_scaling_replans_the_derate_and_recovers(tmp_path):
    lines, tele = run(tmp_path / 'dyn', True)
    hot = hot_window(lines)
    assert hot, 'no truth lines in the hot window'
    # the supervisor derated (frequencies under 490 somewhere) and the chips were re-planned
    assert min(mean_f(l) for l in hot) < 0.99 * 490, 'no derate at 45 C ambient'
    assert max(spread(l) for l in hot) > 0.08, 'flat cap: chips not re-planned'
    assert any(b.get('scaling') == 'replan' for t in tele for b in t['boards']), \
        'telemetry never showed a re-planned board'
    assert all(t.get('dynamic_scaling') is True for t in tele)
    # no trip: every board stayed on, no die reached dangerous
    assert all(b['enabled'] for l in lines if l['t_s'] >= 30 for b in l['boards'])
    peak = max(l['hottest_c'] for l in lines)
    assert peak < DANGER_C
    # recovery when it cooled: back at the requests, flat again
    end = lines[-1]
    assert abs(mean_f(end) - 490) < 2.0 and spread(end) < 0.02, (mean_f(end), spread(end))

    if not os.environ.get('HASHPILOT_DYN_COMPARE'):
        return      # the flat-cap run gives only a figure (below): opt-in, it doubles the test's 150 s
    flat_lines, _ = run(tmp_path / 'flat', False)
    flat_hot = hot_window(flat_lines)
    dyn_ths = sum(l['good_ths'] for l in hot) / len(hot)
    flat_ths = sum(l['good_ths'] for l in flat_hot) / len(flat_hot)
    assert max(spread(l) for l in flat_hot) < 0.03           # the flat cap is flat
    report('dynamic_scaling_ambient_25_45_25', dynamic_good_ths=round(dyn_ths, 2),
           flat_good_ths=round(flat_ths, 2), gain_pct=round(100.0 * (dyn_ths / flat_ths - 1), 2),
           dynamic_mean_mhz=round(sum(mean_f(l) for l in hot) / len(hot), 1),
           flat_mean_mhz=round(sum(mean_f(l) for l in flat_hot) / len(flat_hot), 1),
           peak_die_c=round(peak, 1),
           flat_peak_die_c=round(max(l['hottest_c'] for l in flat_lines), 1))
    # No assertion on dynamic vs flat here: on a loaded host the agent's timing moves both by
    # several per cent from run to run (six runs: +7.6, +10.0, +3.8, -2.0, -0.5, +10.2 %). The deterministic
    # comparison is tests/test_dynamic_scaling.py::test_closed_loop_replan_beats_the_flat_cap_and_recovers.
