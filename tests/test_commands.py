"""Command validation: malformed, unknown, out-of-range and expired commands are refused."""

import pytest

from agent.commands import validate

CTX = {'boards': 3, 'chips_per_board': 108, 'freq_min_mhz': 50, 'freq_max_mhz': 700,
       'fan_min_pct': 10}
NOW = 1_800_000_000.0


@pytest.mark.parametrize('op,body,reason', [
    ('nope', {'id': 'a'}, 'unknown command'),
    ('set_fan', [], 'must be a map'),
    ('set_fan', {'mode': 'auto'}, 'id must be'),
    ('set_fan', {'id': '', 'mode': 'auto'}, 'id must be'),
    ('set_fan', {'id': 'x' * 65, 'mode': 'auto'}, 'id must be'),
    ('set_fan', {'id': 'a', 'mode': 'turbo'}, 'mode must be'),
    ('set_fan', {'id': 'a', 'mode': 'manual'}, 'needs duty_pct'),
    ('set_fan', {'id': 'a', 'mode': 'manual', 'duty_pct': 101}, 'outside'),
    ('set_fan', {'id': 'a', 'mode': 'manual', 'duty_pct': 5}, 'outside'),
    ('set_fan', {'id': 'a', 'mode': 'manual', 'duty_pct': True}, 'needs duty_pct'),
    ('set_fan', {'id': 'a', 'mode': 'manual', 'duty_pct': float('nan')}, 'needs duty_pct'),
    ('set_fan', {'id': 'a', 'mode': 'auto', 'duty_pct': 50}, 'only for manual'),
    ('set_fan', {'id': 'a', 'mode': 'auto', 'x': 1}, 'unknown field'),
    ('set_frequency', {'id': 'a', 'mhz': '500'}, 'mhz must be'),
    ('set_frequency', {'id': 'a', 'mhz': 9000}, 'outside the family limits'),
    ('set_frequency', {'id': 'a', 'mhz': 500, 'board': 3}, 'board must be'),
    ('set_frequency', {'id': 'a', 'mhz': 500, 'chip': 1}, 'chip needs board'),
    ('set_frequency', {'id': 'a', 'mhz': 500, 'board': 0, 'chip': 108}, 'chip must be'),
    ('set_frequency', {'id': 'a', 'mhz': 500, 'expires': NOW - 5}, 'expired'),
    ('set_frequency', {'id': 'a', 'mhz': 500, 'expires': 'soon'}, 'expires must be'),
    ('identify', {'id': 'a', 'duration_s': 0}, 'duration_s'),
    ('rebirth', {'id': 'a', 'now': 1}, 'unknown field'),
])
def test_bad_commands_are_refused_with_reason(op, body, reason):
    cmd, err = validate(op, body, CTX, NOW)
    assert cmd is None
    assert reason in err


def test_good_commands():
    cmd, err = validate('set_frequency', {'id': 'c1', 'mhz': 500, 'board': 1, 'chip': 7,
                                          'expires': NOW + 10}, CTX, NOW)
    assert err is None and cmd == {'op': 'set_frequency', 'id': 'c1',
                                   'args': {'mhz': 500.0, 'board': 1, 'chip': 7}}
    cmd, err = validate('set_fan', {'id': 'c2', 'mode': 'manual', 'duty_pct': 70}, CTX, NOW)
    assert cmd['args'] == {'mode': 'manual', 'duty_pct': 70.0}
    assert validate('rebirth', {'id': 'r'}, CTX, NOW)[0]['op'] == 'rebirth'
