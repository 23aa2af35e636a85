"""Where an installed hashpilot lives inside a target root (one place for every path)."""

import os

NAME = 'hashpilot'
OPT = '/opt/hashpilot'
RELEASES = OPT + '/releases'
CURRENT = OPT + '/current'      # symlink -> releases/<version>
PREVIOUS = OPT + '/previous'    # symlink -> releases/<version> (rollback target)
LOCK = OPT + '/.lock'
USR_BIN = '/usr/bin/hashpilot'  # symlink -> ../../opt/hashpilot/current/hashpilot
ETC = '/etc/hashpilot'
CONFIG = ETC + '/hashpilot.toml'
HOOKS = ETC + '/hooks.d'
MQTT_PASSWORD = ETC + '/mqtt-password'         # plaintext, 0600, owned by the agent user
MQTT_BROKER_ENTRY = ETC + '/mqtt-passwd-entry'  # `user:$7$...` line for mosquitto's password_file
STATE = '/var/lib/hashpilot'
HEALTH = STATE + '/health.json'
EXE = 'hashpilot'  # executable name inside a release directory


class Layout:
    """Maps the absolute paths above into a root directory ('/' on the device)."""

    def __init__(self, root='/'):
        self.root = os.path.abspath(root)

    def p(self, path):
        return os.path.join(self.root, path.lstrip('/'))

    def release_dir(self, version):
        return self.p(RELEASES + '/' + version)

    def link_target(self, link):
        """Release name a `current`/`previous` symlink points to, or None."""
        try:
            return os.path.basename(os.readlink(self.p(link)))
        except OSError:
            return None

    def releases(self):
        try:
            names = os.listdir(self.p(RELEASES))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith('.'))
