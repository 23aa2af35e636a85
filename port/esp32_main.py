"""ESP32-S3 entry (Bitaxe Gamma): Wi-Fi, clock, I2C parts, ASIC UART, hardware watchdog, then the
agent. Frozen into the image (build/micropython/manifest_esp32.py); main.py on the board is

    import port.esp32_main

/config.json holds port/agent.py DEFAULTS keys plus "wifi": {"ssid", "password"}. NOT RUN here
(no ESP-IDF, no board): compiled by mpy-cross only; docs/micropython.md lists what is missing.
"""

import json
import time

import machine
import network

from hal.clock import Clock
from port.agent import MpyAgent
from port.flash_outbox import FlashOutbox
from port.serial_esp32 import UartSerial
from port.umqtt_link import UmqttLink

I2C_SDA = 47          # ESP-Miner main/Kconfig.projbuild defaults
I2C_SCL = 48
I2C_HZ = 100000       # ESP-Miner i2c_bitaxe.c I2C_MASTER_FREQ_HZ
ASIC_RESET_PIN = 1    # ESP-Miner CONFIG_GPIO_ASIC_RESET default; asic_reset.c: low 100 ms, high, 100 ms


def asic_reset():
    """Pulse the ASIC's reset line before the chain scan (chips start in their reset state)."""
    pin = machine.Pin(ASIC_RESET_PIN, machine.Pin.OUT)
    pin.value(0)
    time.sleep_ms(100)
    pin.value(1)
    time.sleep_ms(100)


def wifi(cfg, timeout_s=30):
    sta = network.WLAN(network.STA_IF)
    sta.active(True)
    if not sta.isconnected():
        sta.connect(cfg['ssid'], cfg['password'])
        t0 = time.ticks_ms()
        while not sta.isconnected():
            if time.ticks_diff(time.ticks_ms(), t0) > timeout_s * 1000:
                raise OSError('wifi: no connection to %r' % cfg['ssid'])
            time.sleep_ms(200)
    try:
        import ntptime          # payload timestamps and command expiry need Unix time
        ntptime.settime()
    except Exception as e:
        print('ntp:', e)
    return sta


class HardwareWatchdog:
    """machine.WDT as the board controller's heartbeat: armed once, fed every control tick."""

    def __init__(self):
        self.wdt = None

    def arm(self, timeout_s):
        self.wdt = machine.WDT(timeout=int(timeout_s * 1000))
        return 0

    def kick(self):
        if self.wdt is not None:
            self.wdt.feed()


def main(path='/config.json'):
    with open(path) as f:
        cfg = json.load(f)
    wifi(cfg.pop('wifi'))
    asic_reset()
    clock = Clock(1.0)
    bus = machine.I2C(0, scl=machine.Pin(I2C_SCL), sda=machine.Pin(I2C_SDA), freq=I2C_HZ)
    wd = HardwareWatchdog()
    uid = ''.join(['%02x' % b for b in machine.unique_id()])

    def link(c):
        host, _, port = c['broker'].rpartition(':')
        outbox = FlashOutbox(c['state_dir'] + '/outbox', clock.wall,
                             max_bytes=c['outbox_max_bytes'], flush_s=c['outbox_flush_s'])
        return UmqttLink({'site': c['site'], 'rig': c['rig'], 'host': host, 'port': int(port),
                          'format': c['format'], 'keepalive_s': c['keepalive_s'],
                          'client_id': c.get('client_id'), 'username': c.get('username'),
                          'password': c.get('password'), 'firmware': 'hashpilot-mpy',
                          'model': c['model']}, outbox, clock.wall)

    agent = MpyAgent(cfg, UartSerial(), bus, clock, link, identity=lambda: 'GAMMA-' + uid,
                     heartbeat=wd.arm, kick=wd.kick)
    try:
        agent.run()
    finally:
        agent.shutdown()


main()
