"""Compare the modules on disk with the explicit list in build/hashpilot.spec.

Exit 1 (or only warn with --warn) when a module of agent/, hal/, mqtt_schema/ or firmware_hooks/
is not declared, since the firmware binary would then depend on PyInstaller's import scan alone.
"""
import ast
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PACKAGES = ('agent', 'hal', 'mqtt_schema', 'firmware_hooks')
# Run-time only entry shims, not loaded by the binary.
IGNORED = {'agent.__main__'}


SPEC = os.path.join(HERE, 'hashpilot.spec')


def spec_list(name, spec_path=SPEC):
    with open(spec_path) as f:
        tree = ast.parse(f.read(), spec_path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == name:
            return list(ast.literal_eval(node.value))
    raise SystemExit('%s not found in %s' % (name, spec_path))


def excluded_ours(spec_path=SPEC):
    """Our modules (and packages) that the binary leaves out on purpose (EXCLUDES)."""
    return {m for m in spec_list('EXCLUDES', spec_path) if m.split('.')[0] in PACKAGES}


def is_excluded(mod, excludes):
    return any(mod == e or mod.startswith(e + '.') for e in excludes)


def declared(spec_path=SPEC, root=ROOT):
    """HIDDEN_IMPORTS plus every module on disk under an excluded package of ours."""
    excl = excluded_ours(spec_path)
    return set(spec_list('HIDDEN_IMPORTS', spec_path)) | {
        m for m in on_disk(root) if is_excluded(m, excl)}


def on_disk(root=ROOT):
    found = set()
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, pkg)):
            dirnames[:] = [d for d in dirnames
                           if os.path.isfile(os.path.join(dirpath, d, '__init__.py'))]
            rel = os.path.relpath(dirpath, root).replace(os.sep, '.')
            for fn in filenames:
                if fn.endswith('.py'):
                    mod = rel if fn == '__init__.py' else rel + '.' + fn[:-3]
                    if mod not in IGNORED:
                        found.add(mod)
    return found


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    missing = sorted(on_disk() - declared())
    if missing:
        print('check_modules: not declared in build/hashpilot.spec HIDDEN_IMPORTS: '
              + ', '.join(missing), file=sys.stderr)
        return 0 if '--warn' in argv else 1
    print('check_modules: all %d modules declared' % len(on_disk()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
