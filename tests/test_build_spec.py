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
