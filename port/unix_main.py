"""Unix-port entry: the agent against the simulator (chain and board controller ptys, the
Bitaxe parts behind the board controller's I2C_XFER).

    micropython -X heapsize=256K -m port.unix_main CONFIG.json

CONFIG.json: port/agent.py DEFAULTS plus "ports_file" (the simulator's) or "chain" + "board".
"""

import json
import sys

from hal.board_i2c import BoardI2C
from hal.board_serial import SerialBoardController
from hal.clock import Clock
from port.agent import MpyAgent
from port.flash_outbox import FlashOutbox
from port.serial_unix import PtySerial
from port.umqtt_link import UmqttLink


def link_factory(clock):
    def make(cfg):
        host, _, port = cfg['broker'].rpartition(':')
        outbox = FlashOutbox(cfg['state_dir'] + '/outbox', clock.wall,
                             max_bytes=cfg['outbox_max_bytes'], flush_s=clock.to_wall(cfg['outbox_flush_s']))
        return UmqttLink({'site': cfg['site'], 'rig': cfg['rig'], 'host': host, 'port': int(port),
                          'format': cfg['format'], 'keepalive_s': cfg['keepalive_s'],
                          'client_id': cfg.get('client_id'), 'username': cfg.get('username'),
                          'password': cfg.get('password'), 'firmware': 'hashpilot-mpy',
                          'model': cfg['model']}, outbox, clock.wall)
    return make


def main(argv):
    if len(argv) < 2:
        print('usage: micropython -m port.unix_main CONFIG.json')
        return 2
    with open(argv[1]) as f:
        cfg = json.load(f)
    pf = cfg.pop('ports_file', None)
    if pf:
        with open(pf) as f:
            ports = json.load(f)
        cfg.setdefault('chain', ports['chains'][0])
        cfg.setdefault('board', ports['board'])
        cfg.setdefault('model', ports.get('model', 'GAMMA'))
        cfg.setdefault('time_scale', ports.get('time_scale', 1.0))
        if ports.get('work_check_bits') is not None:     # the simulator's nonce difficulty
            cfg.setdefault('work_check_bits', ports['work_check_bits'])
    try:
        clock = Clock(cfg.get('time_scale', 1.0))
        ctl = SerialBoardController(PtySerial(cfg.pop('board')), clock=clock, timeout_s=0.3)
        agent = MpyAgent(cfg, PtySerial(cfg.pop('chain')), BoardI2C(ctl), clock,
                         link_factory(clock), identity=lambda: ctl.board_id(0),
                         heartbeat=ctl.set_heartbeat_watchdog)
    except (KeyError, ValueError, OSError) as e:
        print('hashpilot-mpy: cannot start (%s): %r' % (argv[1], e))
        return 2
    try:
        agent.start()
    except (KeyError, ValueError, OSError) as e:     # a bad pool entry shows up here
        print('hashpilot-mpy: cannot start (%s): %r' % (argv[1], e))
        agent.shutdown()
        return 2
    try:
        agent.loop.run()
    except KeyboardInterrupt:
        pass
    finally:
        agent.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
