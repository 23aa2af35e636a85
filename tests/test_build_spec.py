"""The PyInstaller spec declares every module of the agent by name (no dynamic discovery).

When this fails, add the listed modules to HIDDEN_IMPORTS in build/hashpilot.spec.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'build'))

import check_modules  # noqa: E402


def test_every_module_is_declared():
    missing = sorted(check_modules.on_disk() - check_modules.declared())
    assert not missing, 'add to build/hashpilot.spec HIDDEN_IMPORTS: %s' % ', '.join(missing)


def test_check_catches_an_undeclared_module(tmp_path):
    """Negative control: a module on disk but not in the spec is reported."""
    pkg = tmp_path / 'hal'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'brand_new.py').write_text('')
    assert 'hal.brand_new' in check_modules.on_disk(str(tmp_path)) - check_modules.declared()


def test_spec_keeps_email_and_ssl():
    """paho imports urllib.request -> http.client -> email; MQTT over TLS needs ssl."""
    import ast
    tree = ast.parse(open(os.path.join(ROOT, 'build', 'hashpilot.spec')).read())
    excludes = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                    and getattr(n.targets[0], 'id', '') == 'EXCLUDES')
    assert 'email' not in excludes and 'ssl' not in excludes and 'unittest' in excludes
    r = subprocess.run([sys.executable, '-c', 'import paho.mqtt.client, sys; '
                        'print("email" in sys.modules)'], capture_output=True, text=True)
    assert r.stdout.strip() == 'True'


def test_left_out_modules_are_consistent():
    """A module is either packed or left out, never both; what is left out exists, and the CLI
    names it (SOURCE_ONLY) so the binary says where to run it instead of a traceback."""
    from agent import cli
    hidden = set(check_modules.spec_list('HIDDEN_IMPORTS'))
    excl = check_modules.excluded_ours()
    assert {'hal.sim', 'agent.demo', 'agent.autotune.png', 'agent.autotune.report'} <= excl
    packed_but_excluded = sorted(m for m in hidden if check_modules.is_excluded(m, excl))
    assert not packed_but_excluded, packed_but_excluded
    disk = check_modules.on_disk()
    assert all(any(check_modules.is_excluded(m, {e}) for m in disk) for e in excl), excl
    for mod in cli.SOURCE_ONLY:
        assert mod in excl or mod in check_modules.spec_list('EXCLUDES'), mod


def test_cli_says_what_is_left_out(capsys):
    """The binary's message for a left-out command: non-zero, names the command and where to run
    it. A module missing for another reason still raises."""
    from agent import cli
    err = ModuleNotFoundError("No module named 'hal.sim'", name='hal.sim')
    assert cli.left_out(err) == 'hal.sim'
    assert cli.not_in_build(['tune', 'report', 'x.json'], 'agent.autotune.report') == 3
    msg = capsys.readouterr().err
    assert 'tune report: not in this build' in msg and 'pip install hashpilot' in msg
    assert cli.left_out(ModuleNotFoundError("No module named 'serial'", name='serial')) is None
    assert cli.left_out(ModuleNotFoundError("x", name='hal.simulator')) is None
