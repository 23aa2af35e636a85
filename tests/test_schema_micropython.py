"""The pure payload builders (mqtt_schema fields/topics/payloads) give identical wire dicts under
a real MicroPython 1.27 (the Unix port `make setup` builds) and CPython."""

import os
import subprocess
import sys


from tests import mpyunix

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PURE = ['mqtt_schema/__init__.py', 'mqtt_schema/fields.py', 'mqtt_schema/topics.py',
        'mqtt_schema/payloads.py']

SCRIPT = r'''
from mqtt_schema import payloads, topics
s = payloads.new_session('abcd1234')
st = {'state': 'running', 'uptime_s': 12.5, 'power_w': 17.9, 'outbox_dropped': 2,
      'fans': [{'duty_pct': 60, 'rpm': 4000}],
      'ctrl': {'cpu_pct': 12.4, 'load1': 0.5, 'temp_c': 45.25},
      'tuner': {'state': 'tuning', 'progress_pct': 40},
      'boards': [{'index': 0, 'temps_c': [50.5, None], 'voltage_mv': 1150, 'safety': 'ok', 'enabled': True,
                  'chips': [{'temp_c': 60.4, 'freq_mhz': 490.3, 'hashrate_ghs': 617.4, 'err_pct': 0.12, 'state': 'ok'},
                            {'temp_c': None, 'freq_mhz': 490.0, 'hashrate_ghs': 0.0, 'err_pct': 0.0, 'alive': False},
                            {'temp_c': 70.0, 'freq_mhz': 500.0, 'hashrate_ghs': 600.0, 'err_pct': 1.5, 'state': 'hot'}]}]}
def norm(x):
    if isinstance(x, dict):
        return sorted([(k, norm(v)) for k, v in x.items()])
    if isinstance(x, list):
        return [norm(v) for v in x]
    return x
print(repr(norm(payloads.build_chips(st, s, 1000))))
print(repr(norm(payloads.build_telemetry(st, s, 1000))))
print(repr(norm(payloads.build_alarm(s, 'hot', 'raise', 'warning', 'hot', 0, 70, 5))))
print(repr(norm(payloads.build_birth(s, 2, 'fw', 'GAMMA', 7))))
print(repr(norm(payloads.build_cmd_result(s, 'c1', False, 'no', 'x', None, 9))))
print(repr([topics.check_name('rig', n) for n in ('ok', '', 'a#', 'x' * 65)]))
print(len(payloads.new_session()['boot_id']))
'''


def test_payload_builders_match_under_micropython(tmp_path):
    path = tmp_path / 'check.py'
    path.write_text(SCRIPT)
    cpy = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert cpy.returncode == 0, cpy.stderr
    mpy = mpyunix.run(path, PURE, tmp_path / 'lib', vendor=False, timeout=120)
    assert mpy.returncode == 0, mpy.stderr + mpy.stdout
    assert mpy.stdout.splitlines() == cpy.stdout.splitlines()
