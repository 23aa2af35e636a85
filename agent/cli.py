"""`hashpilot` command line: dispatches to one module per sub-command.

Imports are explicit (inside small loader functions) so PyInstaller sees every module without
dynamic discovery, while `hashpilot --version` stays fast.
"""

import os
import sys

from agent import __version__


def summary(doc):
    """A module docstring's first paragraph as one line: argparse descriptions whole, never
    the first physical line of a sentence that goes on."""
    return ' '.join(doc.strip().split('\n\n')[0].split())


def _sim():
    from hal.sim import main as m
    return m.main


def _chain():
    from hal.tools import chain_cli as m
    return m.main


def _frame():
    from hal.tools import frame_cli as m
    return m.main


def _bench():
    from agent import bench as m
    return m.main


def _run():
    from agent import runner as m
    return m.main


def _demo():
    # `from agent.demo import`: a module left out of the binary then raises ModuleNotFoundError
    # naming it (`from agent import demo` raises a bare ImportError there).
    from agent.demo import main
    return main


def _config():
    from agent import config as m
    return m.main


def _schema():
    from mqtt_schema import cli as m
    return m.main


def _tune():
    from agent import tune_cli as m
    return m.main


def _fleet():
    from fleet import cli as m
    return m.main


def _work():
    from agent import work_cli as m
    return m.main


def _pool():
    from agent.stratum import testpool as m
    return m.main


def _firmware():
    from firmware_hooks import cli as m
    return m.main


COMMANDS = {
    'sim': (_sim, 'run the hashboard simulator on pseudo-terminals'),
    'chain': (_chain, 'scan a chain / show per-chip status (integrators)'),
    'frame': (_frame, 'decode or encode BM13xx frames (protocol analyser)'),
    'bench': (_bench, 'benchmarks: UART sweep, autotune, fleet, work path (source tree)'),
    'run': (_run, 'run the agent (control loop, safety, MQTT)'),
    'demo': (_demo, 'simulated S21 + local Mosquitto + agent with a live console view'),
    'config': (_config, 'print an example config / check a config file'),
    'schema': (_schema, 'MQTT schema: decode payloads, write the reference doc'),
    'tune': (_tune, 'autotune from the command line; render a saved result'),
    'work': (_work, 'Stratum jobs -> chip job frames, nonce frames -> shares, header hashes'),
    'pool': (_pool, 'Stratum V1 test pool on 127.0.0.1 (verifies every share)'),
    'firmware': (_firmware, 'install into a root, upgrade/rollback, event hooks'),
    'fleet': (_fleet, 'operator tools: watch, dashboard, metrics, Home Assistant, curtail'),
}


# Left out of the firmware binary (build/hashpilot.spec EXCLUDES): a control board never runs them.
SOURCE_ONLY = ('hal.sim', 'agent.demo', 'agent.autotune.report', 'agent.autotune.png', 'fleet',
               'agent.bench_autotune', 'agent.autotune.plant')


def left_out(err):
    """The SOURCE_ONLY module whose absence raised `err`, or None (a real missing module)."""
    name = err.name or ''
    for mod in SOURCE_ONLY:
        if name == mod or name.startswith(mod + '.'):
            return mod
    return None


def not_in_build(argv, mod):
    words = []
    for w in argv[:2]:
        if w.startswith('-'):
            break
        words.append(w)
    cmd = ' '.join(words)
    print('hashpilot %s: not in this build: the firmware binary leaves out %s, which a control '
          'board never runs. Run it from the source tree (`.venv/bin/python -m agent %s`) or '
          'after `pip install hashpilot`.' % (cmd, mod, cmd), file=sys.stderr)
    return 3


def usage():
    lines = ['usage: hashpilot [--version] COMMAND [ARGS...]', '', 'commands:']
    for name in COMMANDS:
        lines.append('  %-9s %s' % (name, COMMANDS[name][1]))
    lines.append('')
    lines.append("run 'hashpilot COMMAND --help' for a command's options")
    return '\n'.join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help', 'help'):
        print(usage())
        return 0
    if argv[0] in ('--version', 'version'):
        print('hashpilot %s' % __version__)
        return 0
    entry = COMMANDS.get(argv[0])
    if entry is None:
        print('hashpilot: unknown command %r\n\n%s' % (argv[0], usage()), file=sys.stderr)
        return 2
    try:
        return entry[0]()(argv[1:]) or 0
    except ModuleNotFoundError as e:
        mod = left_out(e)
        if mod is None:
            raise
        return not_in_build(argv, mod)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error of ours. Point stdout at devnull
        # so the interpreter's final flush does not raise again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 141


if __name__ == '__main__':
    sys.exit(main())
