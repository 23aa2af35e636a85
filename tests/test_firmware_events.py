"""Event hooks: well-formed JSON on stdin, order and filtering, timeouts, non-blocking fire()."""

import json
import os
import time

from firmware_hooks import events


def hook(d, name, body, mode=0o755):
    p = d / name
    p.write_text('#!/bin/sh\n' + body + '\n')
    p.chmod(mode)
    return p


def test_hook_receives_well_formed_json(tmp_path):
    hooks = tmp_path / 'hooks.d'
    hooks.mkdir()
    out = tmp_path / 'out'
    hook(hooks, '50-record', 'cat > %s.json; echo "$1 $HASHPILOT_EVENT" > %s.argv' % (out, out))
    r = events.HookRunner(str(hooks), timeout_s=5)
    assert r.fire({'event': 'alarm_raised', 'code': 'TEMP_HOT', 'board': 1, 'temp_c': 91.5,
                   'msg': 'quote " and \\ and é'})
    assert r.close(10)
    ev = json.loads((tmp_path / 'out.json').read_text())
    assert ev['event'] == 'alarm_raised' and ev['code'] == 'TEMP_HOT' and ev['board'] == 1
    assert ev['temp_c'] == 91.5 and ev['msg'] == 'quote " and \\ and é'
    assert abs(ev['ts'] - time.time()) < 30
    assert (tmp_path / 'out.argv').read_text().split() == ['alarm_raised', 'alarm_raised']
    st = r.get_status()
    assert st['runs'] == 1 and st['failures'] == 0 and st['last']['rc'] == 0


def test_only_regular_executables_in_name_order(tmp_path):
    hooks = tmp_path / 'hooks.d'
    hooks.mkdir()
    log = tmp_path / 'log'
    for name in ('20-b', '10-a', '30-c~', '.hidden', '40-d.bak', '50-e.dpkg-old', '60-f.swp'):
        hook(hooks, name, 'echo %s >> %s' % (name, log))
    hook(hooks, '15-noexec', 'echo noexec >> %s' % log, mode=0o644)
    (hooks / '25-dir').mkdir()
    os.symlink(str(hooks / '10-a'), str(hooks / '12-link'))
    assert [os.path.basename(p) for p in events.list_hooks(str(hooks))] == \
        ['10-a', '12-link', '20-b']
    res = events.run_hooks(str(hooks), {'event': 'tune_finished'})
    assert [r['rc'] for r in res] == [0, 0, 0]
    assert log.read_text().split() == ['10-a', '10-a', '20-b']


def test_hanging_hook_is_killed_and_fire_does_not_block(tmp_path):
    hooks = tmp_path / 'hooks.d'
    hooks.mkdir()
    pids = tmp_path / 'pids'
    after = tmp_path / 'after'
    # The hook starts a grandchild in its process group, then hangs.
    hook(hooks, '10-hang', 'sleep 300 & echo $! > %s; cat >/dev/null; sleep 300' % pids)
    hook(hooks, '20-after', 'cat > %s' % after)
    r = events.HookRunner(str(hooks), timeout_s=0.5)
    t0 = time.monotonic()
    assert r.fire({'event': 'shutting_down'})
    fire_s = time.monotonic() - t0
    assert fire_s < 0.25, fire_s
    assert r.close(20)
    st = r.get_status()
    assert st['timeouts'] == 1 and st['runs'] == 2
    grandchild = int(pids.read_text())
    for _ in range(50):  # reaped by init; give it a moment
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError('grandchild %d of the hung hook still alive' % grandchild)
    assert json.loads(after.read_text())['event'] == 'shutting_down'


def test_full_queue_drops_and_counts(tmp_path):
    hooks = tmp_path / 'hooks.d'
    hooks.mkdir()
    hook(hooks, '10-slow', 'cat >/dev/null; sleep 0.3')
    r = events.HookRunner(str(hooks), timeout_s=5, queue_max=2)
    t0 = time.monotonic()
    results = [r.fire({'event': 'test', 'n': i}) for i in range(20)]
    assert time.monotonic() - t0 < 1.0
    st = r.get_status()
    assert st['dropped'] > 0 and st['fired'] + st['dropped'] == 20
    assert results.count(True) == st['fired']
    r.close(20)
    assert r.get_status()['runs'] == st['fired']


def test_bad_events_are_rejected_without_raising(tmp_path):
    r = events.HookRunner(str(tmp_path), timeout_s=1)
    assert r.fire('alarm') is False
    assert r.fire({'code': 1}) is False
    assert r.fire({'event': 'x', 'obj': object()}) is False
    assert r.fire({'event': 'x', 'v': float('nan')}) is False
    assert r.get_status()['rejected'] == 4
    assert r.close(1)


def test_failing_hook_output_captured(tmp_path):
    hooks = tmp_path / 'hooks.d'
    hooks.mkdir()
    hook(hooks, '10-fail', 'echo out; echo broken >&2; exit 4')
    res = events.run_hooks(str(hooks), {'event': 'alarm_cleared'})
    assert res[0]['rc'] == 4 and res[0]['stdout'] == 'out\n' and res[0]['stderr'] == 'broken\n'
    assert not res[0]['timed_out']


def test_missing_hooks_dir_is_fine(tmp_path):
    r = events.HookRunner(str(tmp_path / 'nope'))
    assert r.fire({'event': 'test'})
    assert r.close(5)
    assert r.get_status()['runs'] == 0
