"""Every config key x {nan, +inf, -inf, huge, negative, wrong type} is refused with a clear
error by `hashpilot config check` and by `hashpilot run`, never a traceback (issue 17). The
matrix is generated from the one schema (agent/config.py SECTIONS), so a new key is attacked
the day it is declared. Also: deep nesting and huge files."""

import os
import subprocess
import sys

import pytest

from agent import config, runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NUMERIC_BAD = {
    'nan': 'nan', '+inf': 'inf', '-inf': '-inf', 'huge': '1e300', 'huge int': '9' * 30,
    'huge int 5000 digits': '9' * 5000, 'negative': '-1e12', 'string': '"12"', 'bool': 'true',
    'array': '[1]', 'table': '{ a = 1 }',
}
OTHER_BAD = {
    'number': '12', 'nan': 'nan', 'inf': 'inf', 'bool': 'true', 'array of tables': '[{ a = 1 }]',
    'table': '{ a = 1 }',
}
LIST_BAD = {'number': '12', 'nan': 'nan', 'string': '"x"', 'table': '{ a = 1 }', 'nested': '[[[1]]]'}
BOOL_BAD = {'number': '1', 'nan': 'nan', 'string': '"maybe"', 'array': '[true]'}


def matrix():
    for spec in config.SECTIONS:
        for o in spec['options']:
            kind = o['kind']
            bad = {'int': NUMERIC_BAD, 'float': NUMERIC_BAD, 'list': LIST_BAD,
                   'bool': BOOL_BAD}.get(kind, OTHER_BAD)
            for name, text in sorted(bad.items()):
                if kind == 'int' and name == 'huge int' and o['hi'] is not None and o['hi'] >= 10 ** 30:
                    continue
                if kind == 'str' and o['choices'] is None and name in ('nan', 'inf'):
                    pass   # bare nan/inf are floats in TOML: still a wrong type for a string
                yield spec, o, name, text


CASES = list(matrix())


def toml_for(spec, key, text):
    head = '[[%s]]' % spec['name'] if spec['array'] else '[%s]' % spec['name']
    return '%s\n%s = %s\n' % (head, key, text)


def test_matrix_covers_every_key():
    keys = set((s['name'], o['key']) for s, o, _n, _t in CASES)
    assert keys == set((s['name'], o['key']) for s in config.SECTIONS for o in s['options'])
    assert len(CASES) > 200


def test_every_key_and_bad_value_refused_by_config_check(tmp_path, capsys):
    failures = []
    for spec, o, name, text in CASES:
        path = tmp_path / 'c.toml'
        path.write_text(toml_for(spec, o['key'], text))
        try:
            rc = config.main(['check', str(path)])
        except BaseException as e:   # a traceback is the failure we look for
            failures.append('%s.%s = %s (%s): %r' % (spec['name'], o['key'], text[:20], name, e))
            continue
        out = capsys.readouterr()
        if rc != 2 or 'config error' not in out.err or o['key'] not in out.err:
            failures.append('%s.%s = %s (%s): rc %s, %r' % (spec['name'], o['key'], text[:20], name,
                                                           rc, (out.err or out.out)[:120]))
    assert not failures, '%d of %d accepted or unclear:\n%s' % (len(failures), len(CASES),
                                                               '\n'.join(failures[:40]))


def test_every_key_and_bad_value_refused_by_run(tmp_path, capsys):
    failures = []
    for spec, o, name, text in CASES:
        path = tmp_path / 'c.toml'
        path.write_text(toml_for(spec, o['key'], text))
        try:
            rc = runner.main(['--config', str(path)])
        except BaseException as e:
            failures.append('%s.%s (%s): %r' % (spec['name'], o['key'], name, e))
            continue
        out = capsys.readouterr()
        if rc != 2 or 'config error' not in out.err:
            failures.append('%s.%s = %s (%s): rc %s, %r' % (spec['name'], o['key'], text[:20], name,
                                                           rc, out.err[-200:]))
    assert not failures, '%d of %d:\n%s' % (len(failures), len(CASES), '\n'.join(failures[:40]))


@pytest.mark.parametrize('body', [
    'a = ' + '[' * 5000 + ']' * 5000 + '\n',
    '[rig]\nsite = ' + '{ a = ' * 3000 + '1' + ' }' * 3000 + '\n',
    '[rig]\nsite = "' + 'x' * (4 << 20) + '"\n',
    '\x00\xff not toml',
])
def test_deep_or_huge_config_is_a_clear_error(tmp_path, body):
    path = tmp_path / 'c.toml'
    path.write_bytes(body.encode('utf-8', 'surrogateescape') if isinstance(body, str) else body)
    for argv in (['-m', 'agent', 'config', 'check', str(path)], ['-m', 'agent', 'run', '--config', str(path)]):
        p = subprocess.run([sys.executable] + argv, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and 'Traceback' not in p.stderr and 'config error' in p.stderr, \
            (argv, p.returncode, p.stderr[-500:])


def test_cli_samples_no_traceback(tmp_path):
    """The in-process matrix above, spot-checked through the real command line."""
    for key, text in (('telemetry', 'poll_s = nan'), ('hooks', 'timeout_s = inf'),
                      ('state', 'outbox_flush_s = -inf'), ('rig', 'freq_mhz = 1e999')):
        path = tmp_path / 'c.toml'
        path.write_text('[%s]\n%s\n' % (key, text))
        for argv in (['config', 'check', str(path)], ['run', '--config', str(path)]):
            p = subprocess.run([sys.executable, '-m', 'agent'] + argv, cwd=REPO, capture_output=True,
                               text=True, timeout=60)
            assert p.returncode == 2 and 'Traceback' not in p.stderr, (argv, p.stderr[-500:])
            assert text.split()[0] in p.stderr, p.stderr
