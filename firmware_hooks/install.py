"""Install / uninstall hashpilot into a root directory ('/' on the device, a staging dir otherwise).

Layout (see layout.py): releases under /opt/hashpilot/releases/<version>/ with `current` and
`previous` symlinks, /usr/bin/hashpilot -> current, config in /etc/hashpilot (0640, never
overwritten), state in /var/lib/hashpilot (0750), a dedicated `hashpilot` user, per-rig MQTT
credentials. Running it twice gives the same result.
"""

import json
import os
import re
import shutil
import subprocess
import time

from firmware_hooks import credentials, events, initsys, users
from firmware_hooks.manifest import sha256_file
from firmware_hooks import layout as L
from mqtt_schema import topics

VERSION_RE = re.compile(r'^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$')


class InstallError(Exception):
    pass


def executable_of(binary):
    """A one-file binary, or the `hashpilot` inside a one-folder build directory."""
    exe = os.path.join(binary, L.EXE) if os.path.isdir(binary) else binary
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise InstallError('%s: not an executable hashpilot binary' % exe)
    return exe


def is_script(binary):
    """True for a '#!' script (a venv's console-script wrapper), not a built executable."""
    try:
        with open(executable_of(binary), 'rb') as f:
            return f.read(2) == b'#!'
    except OSError:
        return False


def probe_version(binary, timeout_s=30):
    """Version reported by `BINARY --version` ('hashpilot X.Y.Z')."""
    exe = executable_of(binary)
    try:
        out = subprocess.run([exe, '--version'], capture_output=True, timeout=timeout_s,
                             text=True).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InstallError('%s --version failed: %s (pass --release-version)' % (exe, e))
    m = re.match(r'^hashpilot\s+(\S+)', out.strip())
    if not m or not VERSION_RE.match(m.group(1)):
        raise InstallError('%s --version printed %r, expected "hashpilot VERSION"' % (exe, out[:80]))
    return m.group(1)


def _makedirs(path, mode, uid=None, gid=None):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if os.geteuid() == 0 and (uid, gid) != (None, None):
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)


def install_release(lay, binary, version):
    """Copy a build into releases/<version>/ (atomic per release); returns the release dir."""
    if not VERSION_RE.match(version):
        raise InstallError('bad release version %r' % version)
    exe = executable_of(binary)
    rel = lay.release_dir(version)
    new_sum = sha256_file(exe)
    info_path = os.path.join(rel, 'RELEASE.json')
    try:
        with open(info_path) as f:
            if json.load(f).get('sha256') == new_sum:
                return rel  # same build already there
    except (OSError, ValueError):
        pass
    _makedirs(lay.p(L.RELEASES), 0o755)
    tmp = lay.p('%s/.%s.tmp-%d' % (L.RELEASES, version, os.getpid()))
    shutil.rmtree(tmp, ignore_errors=True)
    if os.path.isdir(binary):
        shutil.copytree(binary, tmp, symlinks=True)
    else:
        os.makedirs(tmp)
        shutil.copy2(exe, os.path.join(tmp, L.EXE))
    os.chmod(os.path.join(tmp, L.EXE), 0o755)
    os.chmod(tmp, 0o755)
    with open(os.path.join(tmp, 'RELEASE.json'), 'w') as f:
        json.dump({'version': version, 'sha256': new_sum, 'installed_ts': time.time(),
                   'kind': 'onedir' if os.path.isdir(binary) else 'onefile'}, f, sort_keys=True)
    if os.path.lexists(rel):  # rebuild of the same version: move the old one aside first
        old = tmp + '.old'
        os.rename(rel, old)
        os.rename(tmp, rel)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, rel)
    return rel


def set_link(lay, link, version):
    """Point `current`/`previous` at releases/<version> atomically (rename over the link)."""
    path = lay.p(link)
    if version is None:
        if os.path.lexists(path):
            os.unlink(path)
        return
    tmp = '%s.tmp-%d' % (path, os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink('releases/' + version, tmp)
    os.replace(tmp, path)


def _usr_bin_link(lay):
    link = lay.p(L.USR_BIN)
    target = os.path.relpath(L.CURRENT + '/' + L.EXE, os.path.dirname(L.USR_BIN))
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.islink(link) and os.readlink(link) == target:
        return
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(target, link)


def _config(lay, site, rig, mqtt_user, gid):
    path = lay.p(L.CONFIG)
    if os.path.exists(path):
        return False
    with open(initsys.template('hashpilot.toml')) as f:
        text = f.read()
    for key, value in (('@SITE@', site), ('@RIG@', rig), ('@MQTT_USER@', mqtt_user)):
        text = text.replace(key, value.replace('\\', '').replace('"', ''))
    fd, tmp = credentials.create_exclusive(path, 0o640)
    with os.fdopen(fd, 'w') as f:
        os.fchmod(f.fileno(), 0o640)
        if gid is not None and os.geteuid() == 0:
            os.fchown(f.fileno(), 0, gid)
        f.write(text)
    os.replace(tmp, path)
    return True


def _credentials(lay, ids, mqtt_user, password_file, rotate, log, run_staging_hooks=False):
    uid, gid = ids if ids else (None, None)
    pw_path = lay.p(L.MQTT_PASSWORD)
    if password_file:
        password = credentials.read_password_file(password_file)
        source = 'provisioned from %s' % password_file
    elif os.path.lexists(pw_path) and not rotate:
        try:
            credentials.fix_secret_owner(pw_path, uid, gid)
        except ValueError as e:
            raise InstallError('%s (remove it, or pass --rotate-credentials)' % e)
        return None
    else:
        password = credentials.generate_password()
        source = 'generated'
    credentials.write_secret(pw_path, password, uid, gid)
    entry = credentials.mosquitto_entry(mqtt_user, password)
    credentials.write_secret(lay.p(L.MQTT_BROKER_ENTRY), entry, 0, 0)
    log('mqtt credentials %s for user %s: password in %s (0600); broker password_file line in %s'
        % (source, mqtt_user, L.MQTT_PASSWORD, L.MQTT_BROKER_ENTRY))
    log('broker entry: %s' % entry)
    # Hooks push the hashed entry to the broker (stdin JSON; the plaintext stays in the 0600 file).
    # Never the hooks of a staging root: they are the image's, not this build host's to run.
    if os.path.realpath(lay.root) != '/' and not run_staging_hooks:
        log('hooks not run for a staging root (%s): they belong to the image '
            '(--run-staging-hooks runs them here)' % lay.root)
    else:
        events.run_hooks(lay.p(L.HOOKS), {'event': 'credentials', 'username': mqtt_user,
                                          'broker_entry': entry, 'password_file': L.MQTT_PASSWORD})
    return entry


def _check_topic_names(site, rig):
    """--site/--rig become topic levels: refuse what the agent would refuse, before anything
    is written (no install that exits 0 with a config the agent cannot start with)."""
    for what, name in (('--site', site), ('--rig', rig)):
        if name is None and what == '--rig':
            continue
        try:
            topics.root(name if what == '--site' else 'x', name if what == '--rig' else 'x')
        except (ValueError, TypeError) as e:
            raise InstallError('%s %r: %s' % (what, name, e))


def install(root, binary, version=None, init='auto', mqtt_user=None, password_file=None,
            rotate_credentials=False, site='site1', rig=None, log=print, run_staging_hooks=False):
    if not os.path.isdir(root):
        # A typo in --root must not grow a second system tree somewhere.
        raise InstallError('--root %s: no such directory (create it first if it is a staging '
                           'root)' % root)
    lay = L.Layout(root)
    if password_file and not mqtt_user:
        raise InstallError('--mqtt-password-file needs --mqtt-user')
    _check_topic_names(site, rig)
    version = version or probe_version(binary)
    kind = initsys.detect(lay) if init == 'auto' else init
    if kind not in initsys.KINDS:
        raise InstallError('--init %r: expected auto, %s' % (init, ', '.join(initsys.KINDS)))

    ids = users.ensure_user(lay.root)
    uid, gid = ids if ids else (None, None)
    if ids is None:
        log('note: %s has no etc/passwd; no hashpilot user added' % lay.root)

    if is_script(binary):
        log('warning: %s is a script (e.g. a venv wrapper), not a PyInstaller build: the '
            'release runs only where that interpreter and its packages exist (build one with '
            '`make build`)' % binary)
    _makedirs(lay.p(L.OPT), 0o755)
    install_release(lay, binary, version)
    cur = lay.link_target(L.CURRENT)
    if cur != version:
        if cur is not None:
            set_link(lay, L.PREVIOUS, cur)
        set_link(lay, L.CURRENT, version)
    _usr_bin_link(lay)
    prune(lay, log)

    _makedirs(lay.p(L.ETC), 0o750, 0, gid)
    _makedirs(lay.p(L.HOOKS), 0o750, 0, gid)
    _makedirs(lay.p(L.STATE), 0o750, uid, gid)

    existing_user = None
    cfg_path = lay.p(L.CONFIG)
    if os.path.exists(cfg_path) and not mqtt_user:
        with open(cfg_path) as f:
            m = re.search(r'(?m)^username\s*=\s*"([^"]+)"', f.read())
        existing_user = m.group(1) if m else None
    mqtt_user = mqtt_user or existing_user or credentials.default_username(lay.root)
    if not credentials.USER_RE.match(mqtt_user):
        raise InstallError('mqtt user %r: use letters, digits, ".", "_", "-"' % mqtt_user)
    rig = rig or mqtt_user.replace('hashpilot-', '', 1)
    if _config(lay, site, rig, mqtt_user, gid):
        log('config written: %s' % L.CONFIG)
    else:
        log('config kept: %s (existing file is never overwritten)' % L.CONFIG)
    _credentials(lay, ids, mqtt_user, password_file, rotate_credentials, log, run_staging_hooks)

    written = initsys.install(lay, kind)
    log('installed hashpilot %s into %s (init: %s: %s)' % (version, lay.root, kind,
                                                           ', '.join(written)))
    return {'version': version, 'init': kind, 'uid': uid, 'gid': gid, 'mqtt_user': mqtt_user}


def uninstall(root, purge=False, log=print):
    """Remove binaries, links and init scripts; --purge also config, state, credentials, user."""
    lay = L.Layout(root)
    removed = initsys.remove(lay)
    if os.path.lexists(lay.p(L.USR_BIN)):
        os.unlink(lay.p(L.USR_BIN))
    shutil.rmtree(lay.p(L.OPT), ignore_errors=True)
    if purge:
        shutil.rmtree(lay.p(L.ETC), ignore_errors=True)
        shutil.rmtree(lay.p(L.STATE), ignore_errors=True)
        users.remove_user(lay.root)
    log('uninstalled hashpilot from %s%s (%d init files removed)'
        % (lay.root, ' with --purge' if purge else '', len(removed)))
    return 0


def prune(lay, log=print):
    """Keep only the releases `current` and `previous` point to (the last two)."""
    keep = {lay.link_target(L.CURRENT), lay.link_target(L.PREVIOUS)}
    removed = []
    for name in lay.releases():
        if name not in keep:
            shutil.rmtree(lay.release_dir(name), ignore_errors=True)
            removed.append(name)
    if removed:
        log('pruned old releases: %s' % ', '.join(removed))
    return removed
