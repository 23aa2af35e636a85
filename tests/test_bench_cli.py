"""`hashpilot bench` as the firmware binary sees it: the modules build/hashpilot.spec leaves out
(the simulator, the autotune bench, fleet/) cannot be imported, yet `bench --help` lists every
bench and each bench says 'not in this build' with exit 3 before starting anything. From the
source tree each bench's own options are there. (build/test-binary.sh checks the real binary.)"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'build'))

import check_modules  # noqa: E402

# Runs agent/cli.py with an import hook that refuses what the spec leaves out, as the
# binary's importer does (ModuleNotFoundError naming the module).
AS_BINARY = '''
import sys
LEFT_OUT = %r

class LeftOut:
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + '.') for m in LEFT_OUT):
            raise ModuleNotFoundError('No module named %%r' %% name, name=name)
        return None

sys.meta_path.insert(0, LeftOut())
from agent import cli
sys.exit(cli.main(sys.argv[1:]))
'''


def run_as_binary(*argv):
    left_out = sorted(check_modules.excluded_ours() | {'fleet'})
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, '-c', AS_BINARY % (left_out,)] + list(argv),
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


def test_bench_help_lists_every_bench_without_importing_them():
    r = run_as_binary('bench', '--help')
    assert r.returncode == 0, r.stderr
    for name in ('sweep', 'autotune', 'fleet', 'work'):
        assert name in r.stdout


@pytest.mark.parametrize('argv,module', [
    (['bench', 'sweep', '--repeat', '1'], 'hal.sim'),
    (['bench', 'autotune'], 'agent.bench_autotune'),
    (['bench', 'autotune', '--help'], 'agent.bench_autotune'),
    (['bench', 'fleet'], 'fleet'),
    (['bench', 'work'], 'hal.sim'),
])
def test_each_bench_says_it_is_not_in_the_binary(argv, module):
    r = run_as_binary(*argv)
    what = ' '.join(argv[:2])
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert 'hashpilot %s: not in this build' % what in r.stderr, r.stderr
    assert 'leaves out %s' % module in r.stderr and '-m agent %s' % what in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr and 'hashpilot-bench-' not in r.stdout + r.stderr


def test_from_the_source_tree_each_bench_has_its_options(capsys):
    from agent import bench
    for name, option in (('sweep', '--repeat'), ('autotune', '--sigma-f'),
                         ('fleet', '--rigs'), ('work', '--seconds')):
        with pytest.raises(SystemExit) as e:
            bench.main([name, '--help'])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert option in out, (name, out[:400])
