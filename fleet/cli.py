"""`hashpilot fleet COMMAND`: one module per operator tool, loaded lazily (explicit imports so
PyInstaller sees them)."""

import sys


def _watch():
    from fleet import watch as m
    return m.main


def _serve():
    from fleet.web import server as m
    return m.main


def _homeassistant():
    from fleet import homeassistant as m
    return m.main


def _curtail():
    from fleet import curtail as m
    return m.main


def _loadgen():
    from fleet import loadgen as m
    return m.main


def _ingest():
    from fleet import ingest as m
    return m.main


def _uplink():
    from fleet import uplink as m
    return m.main


def _broker_config():
    from fleet import brokerconf as m
    return m.main


COMMANDS = {
    'watch': (_watch, 'live fleet view in the terminal (rows per rig, site totals, heat maps)'),
    'serve': (_serve, 'web dashboard with live heat maps, alarm log, charts and /metrics'),
    'homeassistant': (_homeassistant, 'Home Assistant MQTT discovery bridge'),
    'curtail': (_curtail, 'bring a site under a power cap (and --restore)'),
    'ingest': (_ingest, 'scalable consumer: shared subscription, dedup, time-series store'),
    'broker-config': (_broker_config, 'Mosquitto config for large sites: limits, per-rig ACLs'),
    'uplink': (_uplink, 'a site broker into the NATS cluster, in batches (JetStream, R3)'),
    'loadgen': (_loadgen, 'virtual rigs publishing real payloads (load, Wills, reconnect storms)'),
}


def usage():
    lines = ['usage: hashpilot fleet COMMAND [ARGS...]', '', 'commands:']
    for name in COMMANDS:
        lines.append('  %-14s %s' % (name, COMMANDS[name][1]))
    lines.append('')
    lines.append("run 'hashpilot fleet COMMAND --help' for a command's options")
    return '\n'.join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help', 'help'):
        print(usage())
        return 0
    entry = COMMANDS.get(argv[0])
    if entry is None:
        print('hashpilot fleet: unknown command %r\n\n%s' % (argv[0], usage()), file=sys.stderr)
        return 2
    try:
        fn = entry[0]()
    except ImportError as e:    # the firmware binary and a plain install leave the extras out
        print("hashpilot fleet %s: needs the operator extras (pip install 'hashpilot[fleet]'): %s"
              % (argv[0], e), file=sys.stderr)
        return 2
    return fn(argv[1:]) or 0
