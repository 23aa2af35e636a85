"""The pure core runs unchanged under a real MicroPython 1.27 (the Unix port `make setup` builds).

Each check is an expression evaluated in CPython and in MicroPython; the printed results must
match. Modules are copied into the interpreter's /lib, as they would be on an ESP32 board.
"""

import os

from tests import mpyunix

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Modules that must stay MicroPython-safe (docs/ARCHITECTURE.md, "Pure core").
PURE_MODULES = [
    'hal/__init__.py', 'hal/crc.py', 'hal/codec.py', 'hal/framer.py', 'hal/pll.py',
    'hal/families.py', 'hal/models.py', 'hal/limits.py', 'hal/board_protocol.py',
    'hal/bitaxe/__init__.py', 'hal/bitaxe/pmbus.py', 'hal/bitaxe/emc2101.py',
    'hal/bitaxe/ds4432u.py', 'hal/bitaxe/tps546.py', 'hal/bitaxe/ina260.py',
    'hal/registers.py', 'hal/hashsum.py',
]
OPTIONAL_PURE = ['hal/sim/__init__.py', 'hal/sim/physics.py']
# Pure by design too, checked for CPython-only imports (their own tests run them under MicroPython).
GUARDED = ['hal/board_bitaxe.py', 'hal/board_i2c.py', 'hal/errors.py', 'hal/clock.py', 'hal/recent.py',
           'agent/options.py', 'agent/alarms.py', 'agent/fan.py', 'agent/safety/__init__.py', 'agent/safety/board.py',
           'agent/safety/config.py', 'agent/safety/detectors.py', 'agent/safety/supervisor.py',
           'agent/safety/watchdog.py', 'agent/safety/watch.py', 'agent/commands.py', 'agent/logsafe.py',
           'agent/autotune/maths.py', 'agent/autotune/nonces.py',
           'agent/autotune/tuner.py', 'agent/autotune/search.py', 'agent/autotune/voltage.py',
           'agent/autotune/io.py', 'agent/autotune/scaling.py', 'mqtt_schema/fields.py',
           'mqtt_schema/cmdauth.py',
           'mqtt_schema/topics.py', 'mqtt_schema/payloads.py']

CHECKS = [
    ('hal.crc', "hex(crc.crc16_ccitt_false(b'123456789'))"),
    ('hal.crc', "[crc.crc5(bytes([h, 5, a, 0])) for h in (0x52, 0x53, 0x40) for a in (0, 2)]"),
    ('hal.codec', "codec.write_reg(0xA4, 0x9000FFFF, broadcast=True)"),
    ('hal.codec', "codec.set_address(2) + codec.chain_inactive() + codec.read_reg(0, broadcast=True)"),
    ('hal.codec', "codec.job(bytes(range(20)))"),
    ('hal.codec', "sorted(codec.decode_command(codec.write_reg(0x08, 0x50C20240, 4)).items())"),
    ('hal.codec', "sorted(codec.decode_response(codec.nonce_response(0x12345678, 3, 0x35, 0xBEEF, 11), 'bm1368').items())"),
    ('hal.codec', "sorted(codec.decode_response(bytes.fromhex('aa5513700000000006')).items())"),
    ('hal.framer', "framer.ResponseFramer(9).feed(b'\\x00\\xaa\\x55\\x01' + codec.reg_response(0x13680000, 0, 0) + b'\\xaa')"),
    ('hal.framer', "framer.CommandFramer().feed(b'junk' + codec.read_reg(0x8C, 4) + codec.job(b'abc')[:-1] + b'\\x00')"),
    ('hal.pll', "[pll.solve(families.get(n), f)['reg'] for n in ('BM1366', 'BM1368', 'BM1370', 'BM1397') for f in (50, 485, 490, 600)]"),
    ('hal.pll', "[round(pll.decode(families.get('BM1366'), 0x50C20240), 3), pll.ramp(485, 500)]"),
    ('hal.families', "[families.ticket_mask_value(b) for b in (0, 8, 9, 14)]"),
    ('hal.families', "[families.address_interval(n, r) for n in (1, 65, 108, 126) for r in ('pow2', 'even')]"),
    ('hal.families', "int(round(families.temp_c_from_code(families.temp_code_from_c(78.25)) * 100))"),  # float repr differs across interpreters
    ('hal.models', "[models.chips_total(models.get(m)) for m in ('S19JPRO', 'S21', 'GAMMA')]"),
    ('hal.limits', "limits.HardwareLimits(models.get('S21'), families.get('BM1368')).check_board_mv(14400)"),
    ('hal.board_protocol', "board_protocol.Framer().feed(b'\\xb5' + board_protocol.encode(7, 0x10, b'\\xff\\x3c'))"),
    ('hal.bitaxe.pmbus', "[pmbus.float_to_linear11(v) for v in (3.2, 4.97, 25.0, -1.5)] + [pmbus.float_to_ulinear16(1.15, 0x17), int(pmbus.linear11_to_float(0xD340) * 64)]"),
    ('hal.bitaxe.emc2101', "[emc2101.c_to_ext(61.25), emc2101.c_to_ext(-10.5), emc2101.ext_to_c(0x7F, 0x00), emc2101.rpm_to_tach(4000), emc2101.duty_to_setting(37)]"),
    ('hal.bitaxe.ds4432u', "[ds4432u.code_for_v(v / 100.0) for v in (100, 115, 130, 150)]"),
    ('hal.hashsum', "[(hashsum.chain_ghs(cs), hashsum.chain_ghs(cs, False), hashsum.alive_count(cs), [hashsum.chip_state(c) for c in cs], hashsum.rig_ghs([1.5, 0, 2.25])) for cs in [[type('C', (), {'alive': a, 'hashrate_ghs': g})() for a, g in ((True, 1.5), (False, 7.0), (True, None), (True, 2.0))]]]"),
    ('hal.registers', "[sorted(registers.fields(r, v).items()) for r, v in ((0x3C, 0x800082AA), (0x18, 0xF000C100), (0x28, 0x11300000), (0xA4, 0x9000FFFF), (0xB0, 0x10020000))]"),
    ('hal.families', "[families.hash_counting_number(families.get(n), c, 196, 2, 5, 1) for n, c in (('BM1368', 108), ('BM1370', 65), ('BM1362', 126))] + [families.nonce_offset_word(i, 65) for i in (0, 1, 64)]"),
]


def _script(checks):
    lines = ['from hal import crc, codec, framer, pll, families, models, limits, board_protocol, '
             'registers, hashsum',
             'from hal.bitaxe import pmbus, emc2101, ds4432u']
    for mod, expr in checks:
        lines.append('print(repr(%s))' % expr)
    return '\n'.join(lines) + '\n'


def test_pure_core_matches_cpython(tmp_path):
    script = _script(CHECKS)
    ns = {}
    exec(script.replace('print(repr(', '_out.append(repr(').replace('))\n', '))\n'),
         {'_out': ns.setdefault('out', [])})
    expected = ns['out']
    path = tmp_path / 'checks.py'
    path.write_text(script)
    mods = PURE_MODULES + [m for m in OPTIONAL_PURE if os.path.exists(os.path.join(ROOT, m))]
    proc = mpyunix.run(path, mods, tmp_path / 'lib', vendor=False, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    got = proc.stdout.splitlines()
    assert len(got) == len(expected), proc.stdout
    for (mod, expr), want, have in zip(CHECKS, expected, got):
        assert have == want, '%s: MicroPython %s != CPython %s' % (expr, have, want)


def test_pure_modules_avoid_cpython_only_imports():
    banned = ('dataclasses', 'typing', 'enum', 'abc', 'pathlib', 'logging', 'threading')
    for mod in PURE_MODULES + OPTIONAL_PURE + GUARDED:
        path = os.path.join(ROOT, mod)
        if not os.path.exists(path):
            continue
        for line in open(path):
            s = line.strip()
            for b in banned:
                assert not (s.startswith('import ' + b) or s.startswith('from ' + b + ' ')), \
                    '%s imports %s (pure core must stay MicroPython-safe)' % (mod, b)
