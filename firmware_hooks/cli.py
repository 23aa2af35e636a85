"""`hashpilot firmware ...`: install into a root, uninstall, upgrade/rollback, status, hooks."""

import argparse
import json
import os
import sys

from firmware_hooks import events, initsys, manifest
from firmware_hooks import install as inst
from firmware_hooks import layout as L
from firmware_hooks import upgrade as upg


def _parser():
    p = argparse.ArgumentParser(prog='hashpilot firmware',
                                description='Firmware integration of the hashpilot agent.')
    sub = p.add_subparsers(dest='cmd', required=True)

    i = sub.add_parser('install', help='install a build into a root (idempotent)')
    i.add_argument('--root', required=True,
                   help='target root directory: / for this system, or an existing staging root')
    i.add_argument('--binary', default=None,
                   help='one-file binary or one-folder build dir; may be left out only when '
                        'this command runs from a built binary (that binary is installed)')
    i.add_argument('--release-version', help='version of --binary (default: ask it --version)')
    i.add_argument('--init', default='auto', choices=('auto',) + initsys.KINDS)
    i.add_argument('--site', default='site1', help='site name for a new config')
    i.add_argument('--rig', help='rig name for a new config (default: from the hostname)')
    i.add_argument('--mqtt-user', help='MQTT username (default: hashpilot-<hostname>)')
    i.add_argument('--run-staging-hooks', action='store_true',
                   help='with --root other than /: run that root\'s hooks.d on this host anyway '
                        '(default: not run; they belong to the image)')
    g = i.add_mutually_exclusive_group()
    g.add_argument('--mqtt-password-file', help='provision the password from this file')
    g.add_argument('--generate-credentials', action='store_true',
                   help='generate a random password if none exists (the default)')
    g.add_argument('--rotate-credentials', action='store_true',
                   help='generate a new random password even if one exists')

    u = sub.add_parser('uninstall', help='remove binaries and init scripts')
    u.add_argument('--root', default='/')
    u.add_argument('--purge', action='store_true', help='also config, state, credentials, user')

    up = sub.add_parser('upgrade', help='install a new release, health-check it, roll back if bad')
    up.add_argument('--root', default='/')
    up.add_argument('--binary', required=True)
    up.add_argument('--release-version')
    up.add_argument('--health-timeout-s', type=float, default=120.0)
    up.add_argument('--health-cmd', help='extra check (argv string, no shell) that must exit 0')
    up.add_argument('--restart-cmd', help='restart command (argv string, no shell); default by init')
    up.add_argument('--force', action='store_true', help='reinstall the current version')

    r = sub.add_parser('rollback', help='switch back to the previous release')
    r.add_argument('--root', default='/')
    r.add_argument('--health-timeout-s', type=float, default=0.0)
    r.add_argument('--restart-cmd')

    s = sub.add_parser('status', help='releases, links and health file (JSON)')
    s.add_argument('--root', default='/')

    v = sub.add_parser('verify', help='check a firmware package directory against MANIFEST.json')
    v.add_argument('--dir', default='.', help='unpacked package directory')

    h = sub.add_parser('hooks', help='list hooks, or fire a test event synchronously')
    h.add_argument('--root', default='/')
    h.add_argument('--fire', metavar='EVENT', help='run the hooks for EVENT now')
    h.add_argument('--data', default='{}', help='JSON object merged into the event')
    h.add_argument('--timeout-s', type=float, default=10.0)
    return p


def _self_binary():
    """This build: the one-folder directory, or the one-file executable."""
    if getattr(sys, 'frozen', False):
        here = os.path.dirname(os.path.abspath(sys.executable))
        if os.path.abspath(getattr(sys, '_MEIPASS', '')).startswith(here + os.sep):
            return here  # one-folder: bundle lives in <dir>/_internal
        return sys.executable
    raise inst.InstallError('--binary is required when not running from a built binary')


def main(argv=None):
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.cmd == 'install':
            inst.install(args.root, args.binary or _self_binary(), args.release_version,
                         args.init, args.mqtt_user, args.mqtt_password_file,
                         args.rotate_credentials, args.site, args.rig,
                         run_staging_hooks=args.run_staging_hooks)
            return 0
        if args.cmd == 'uninstall':
            return inst.uninstall(args.root, args.purge)
        if args.cmd == 'upgrade':
            return upg.upgrade(args.root, args.binary, args.release_version,
                               args.health_timeout_s, args.health_cmd, args.restart_cmd,
                               args.force)
        if args.cmd == 'rollback':
            return upg.rollback(args.root, args.health_timeout_s, args.restart_cmd)
        if args.cmd == 'status':
            print(json.dumps(upg.status(args.root), indent=2, sort_keys=True))
            return 0
        if args.cmd == 'verify':
            problems = manifest.verify(args.dir)
            for p in problems:
                print('verify: ' + p, file=sys.stderr)
            print('verify: %s' % ('FAILED (%d problems)' % len(problems) if problems else 'OK'))
            return 1 if problems else 0
        if args.cmd == 'hooks':
            hooks_dir = L.Layout(args.root).p(L.HOOKS)
            if not args.fire:
                for path in events.list_hooks(hooks_dir):
                    print(path)
                return 0
            data = json.loads(args.data)
            if not isinstance(data, dict):
                raise ValueError('--data must be a JSON object')
            data['event'] = args.fire
            results = events.run_hooks(hooks_dir, data, args.timeout_s)
            print(json.dumps(results, indent=2))
            return 0 if all(r['rc'] == 0 for r in results) else 1
    except (inst.InstallError, upg.UpgradeError, ValueError, OSError) as e:
        print('hashpilot firmware %s: %s' % (args.cmd, e), file=sys.stderr)
        return 1
    return 2
