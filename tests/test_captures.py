"""Known answers from real traffic: bring-up frames of ESP-Miner (components/asic/bm1366.c,
bm1368.c, bm1370.c, whose BM1370 sequence mujina's Bitaxe capture reproduces write for write)
and mujina's captures (REFERENCE.md, protocol.rs, test_data.rs: Bitaxe Gamma, S21 Pro, S19j Pro)
against what hashpilot sends (`chain init --dry-run`), and real response frames against the
decoders. Sources and the listed differences: docs/protocol-notes.md.
"""

import json
import subprocess
import sys

import pytest

from hal import codec, families, framer, pll, registers
from hal.chain import ChainError
from hal.tools.chain_cli import dry_run

H = bytes.fromhex


def sent(family, chips, mhz, baud=None):
    return [H(d['hex']) for d in dry_run(families.get(family), chips, mhz, baud)
            if 'hex' in d]


def without_ramp(frames):
    return [f for f in frames if not (f[2] & 0x0F == 1 and f[5] == families.REG_PLL0)]


A4 = H('55AA510900A49000FFFF1C')
READ_ID = H('55AA52050000 0A'.replace(' ', ''))
INACTIVE = H('55AA53050000 03'.replace(' ', ''))


def test_bm1370_single_chip_is_esp_miners_sequence_byte_for_byte():
    # ESP-Miner BM1370_init as sent to a Bitaxe Gamma (frames from the driver's own comments
    # where it quotes them, the rest encoded from its data arrays); 1.04 Mbaud afterwards.
    chip = [H('55AA410900A8000701F015'), H('55AA41090018F000C1000C'),
            H('55AA4109003C80008B001A'), H('55AA4109003C8000800C19'),
            H('55AA4109003C800082AA05')]
    hcn = families.hash_counting_number(families.get('BM1370'), 1, 168, 2, 4, 1)
    assert hcn == int(2 ** 32 / 128 / 1 * 25.0 / 525 * 0.5) - 2 * 134     # ESP-Miner's formula
    expect = [A4, A4, A4, READ_ID, A4, H('55AA510900A80007000003'), H('55AA51090018F000C10004'),
              INACTIVE, H('55AA40050000 1C'.replace(' ', '')),
              H('55AA5109003C80008B0012'), H('55AA5109003C8000800C11'),
              H('55AA51090014000000FF08'), H('55AA5109005800011111 0D'.replace(' ', '')),
              ] + chip + [
              H('55AA510900B9000044800D'), H('55AA5109005400000002 18'.replace(' ', '')),
              H('55AA510900B9000044800D'), H('55AA5109003C80008DEE1B'),
              codec.write_reg(0x10, hcn, broadcast=True),
              H('55AA510900281130020000'[:-2] + '%02X' % codec.write_reg(
                  0x28, 0x11300200, broadcast=True)[-1])]
    frames = sent('BM1370', 1, 525.0, 1041667)
    assert without_ramp(frames) == expect
    ramp = [f for f in frames if f not in expect]
    assert ramp[-1] == codec.write_reg(0x08, 0x40A80230, broadcast=True)     # 525 MHz
    assert [pll.decode(families.get('BM1370'), int.from_bytes(f[6:10], 'big'))
            for f in ramp[:2]] == [56.25, 62.5]


def test_bm1368_is_esp_miners_sequence_plus_listed_additions():
    fam = families.get('BM1368')
    hcn = families.hash_counting_number(fam, 108, 196, 2, 5, 1)
    assert hcn == int(2 ** 32 / 128 / 128 * 25.0 / 490 * 0.5) == 0x1A1F
    addrs = [codec.set_address(2 * i) for i in range(108)]
    per_chip = []
    for i in range(108):
        for reg, value in ((0xA8, 0x000701F0), (0x18, 0xF000C100), (0x3C, 0x80008B00),
                           (0x3C, 0x80008018), (0x3C, 0x800082AA)):
            per_chip.append(codec.write_reg(reg, value, 2 * i))
    ticket = H('55AA51090014000000FF08')
    esp = [A4] * 4 + [READ_ID, INACTIVE, H('55AA510900A80007000003'),
                      H('55AA51090018FF0FC10000'), H('55AA5109003C80008B0012'),
                      codec.write_reg(0x3C, 0x80008018, broadcast=True), ticket,
                      H('55AA510900540000000 31D'.replace(' ', '')),
                      H('55AA51090058021111110 6'.replace(' ', ''))] + addrs + per_chip + \
        [ticket, codec.write_reg(0x10, hcn, broadcast=True), A4]
    added = [codec.write_reg(0xB0, v, broadcast=True) for v in (0x00020000, 0x01020000,
                                                                0x10020000)] + \
        [codec.write_reg(0x28, 0x11300000, broadcast=True)]
    assert without_ramp(sent('BM1368', 108, 490.0, 3125000)) == esp + added


def test_bm1366_frames_esp_miner_sends_literally():
    frames = sent('BM1366', 4, 485.0)
    for lit in ('55AA52050000 0A', '55AA510900A80007000003', '55AA51090018FF0FC10000',
                '55AA5109003C800085400C', '55AA5109003C8000802019', '55AA510900540000000 31D',
                '55AA51090058021111110 6', '55AA410900 2C007C000303', '55AA510900A49000FFFF1C'):
        assert H(lit.replace(' ', '')) in frames, lit


def test_mujina_protocol_frames_are_ours():
    # protocol.rs test frames (BM1370 chain: S21 Pro / Bitaxe captures)
    frames = sent('BM1370', 65, 600.0, 3125000)
    for lit in ('55aa52050000 0a', '55aa510900a49000ffff1c', '55aa510900a80007000003',
                '55aa51090018f000c10004', '55aa53050000 03', '55aa40050400 03',
                '55aa5109003c80008b0012', '55aa51090014000000ff08'):
        assert H(lit.replace(' ', '')) in frames, lit
    # listed difference: the S21 Pro's constant 0x1EB5 against our full-coverage formula
    s21pro_hcn = H('55aa51090010 00001eb5 0f'.replace(' ', ''))
    assert s21pro_hcn not in frames
    hcn = [f for f in frames if f[5] == 0x10][0]
    assert int.from_bytes(hcn[6:10], 'big') > 0x1EB5
    # S21 Pro offsets: 0x0000, 0x03F1, ... 0xFC10 for 65 chips, per chip, bit 31 set
    offs = [int.from_bytes(f[6:10], 'big') for f in frames if f[2] == 0x41 and f[5] == 0x0C]
    assert len(offs) == 65 and offs[0] == 0x80000000 and offs[1] == 0x800003F1 \
        and offs[-1] == 0x8000FC10
    # 3.125 Mbaud on BM1370 chains: 0x01300000 (S21 Pro capture)
    assert codec.write_reg(0x28, 0x01300000, broadcast=True) in frames


def test_bm1362_order_follows_the_s19j_pro_capture():
    frames = sent('BM1362', 126, 525.0, 3125000)
    regs = [(f[5], int.from_bytes(f[6:10], 'big')) for f in frames if f[2] == 0x51]
    order = [r for r, _ in regs]
    # baud change, then the ramp, then the per-chip pass (S19j Pro), then 0x10 and 0xA4
    assert order.index(0x28) < order.index(0x08)
    per_chip = [f for f in frames if f[2] == 0x41]
    assert per_chip[0][5] == 0xA8 and int.from_bytes(per_chip[0][6:10], 'big') == 2
    assert frames.index(per_chip[0]) > max(i for i, f in enumerate(frames) if f[5] == 0x08)
    assert (0x18, 0xB000C100) in regs and (0x28, 0x11300000) in regs
    ramp = [v for r, v in regs if r == 0x08]
    assert ramp[0] == 0x40A20255 and ramp[-1] == 0x40A80230     # 56.25 (6 x 6) ... 525 MHz


# ---- responses -----------------------------------------------------------------------------

def test_chip_id_and_register_answers_decode():
    d = codec.decode_response(H('aa5513700000000000 0010'.replace(' ', '')))
    assert d['crc_ok'] and d['kind'] == 'reg' and d['value'] >> 16 == 0x1370 and d['reg'] == 0
    assert registers.fields(0, d['value'])['family'] == 'BM1370'
    # a reset BM1370 answering a read of 0x18 in the short form: the power-on value
    d = codec.decode_response(H('AA550000C10000 1802'.replace(' ', '')))
    assert d['crc_ok'] and d['value'] == 0x0000C100 and d['reg'] == 0x18 and d['length'] == 9
    assert registers.fields(0x18, d['value'])['report_enables'] == []


@pytest.mark.parametrize('hexframe, layout, want', [
    # Bitaxe Gamma share (test_data.rs): nonce 7552034C submitted, ESP-Miner logs
    # "Job ID: 68, Core: 38/2, Ver: 00B44000"
    ('AA554C0352750CD205A29C', 'bm1370', {'nonce_le': 0x7552034C, 'job_id': 0x68, 'core': 2,
                                          'core_id': 38, 'version_bits': 0x00B44000}),
    # S21 Pro (REFERENCE.md): core 0x0C, job 9 (ESP-Miner's numbering 0x48), sub-core 9
    ('AA551800A640029922F991', 'bm1370', {'nonce_le': 0x40A60018, 'job_id': 0x48, 'core': 9,
                                          'core_id': 0x0C, 'version_bits': 0x22F9 << 13}),
    # S19j Pro (REFERENCE.md): core 54, chip address 0xDC, job 0, sub-core 4
    ('AA556DB88EE101040354 94'.replace(' ', ''), 'bm1366',
     {'nonce_le': 0xE18EB86D, 'job_id': 0, 'core': 4, 'core_id': 54, 'chip_addr': 0xDC,
      'version_bits': 0x0354 << 13}),
])
def test_real_nonce_frames_decode(hexframe, layout, want):
    d = codec.decode_response(H(hexframe), layout)
    assert d['crc_ok'] and d['kind'] == 'nonce'
    assert int.from_bytes(H(hexframe)[2:6], 'little') == want['nonce_le']
    assert d['job_id'] == want['job_id'] and d['core'] == want['core']
    assert d['nonce'] >> 25 == want['core_id']
    assert d['version'] << 13 == want['version_bits']
    if 'chip_addr' in want:
        assert d['chip_addr'] == want['chip_addr']


def test_other_captured_nonce_frames_pass_crc():
    for hx in ('aa550735cdcf025e002e96', 'aa55460332e700c32c8399', 'aa557b8d816002550085 81',
               'aa55322a845a025201b28c', 'aa555003 41d6008118019b'):
        d = codec.decode_response(H(hx.replace(' ', '')), 'bm1370')
        assert d['crc_ok'] and d['kind'] == 'nonce', hx


BITAXE_JOB = H(
    '55AA21566801000000 00043A0217D7685468 5519A7CB044F8872 6355919E61A98BCF71'
    'A0C28795EA54DB8C 36414B06DDF5F000 00000000000000 965201001D3996BC'
    'A3F4670DFCD4F201 C162B96DFD55646B 00000020721C'.replace(' ', ''))


def test_job_frames_with_either_length_byte_frame_whole():
    assert len(BITAXE_JOB) == 88
    fr = framer.CommandFramer()
    assert fr.feed(b'\x00' + BITAXE_JOB) == [BITAXE_JOB]       # ESP-Miner's LEN 0x56
    # the same job as stock firmware sends it: LEN 0x36 (its CRC16 covers LEN)
    factory = codec.job(BITAXE_JOB[4:86])[:3] + b'\x36' + BITAXE_JOB[4:86]
    crc = __import__('hal.crc', fromlist=['crc']).crc16_ccitt_false(factory[2:])
    factory += bytes([crc >> 8, crc & 0xFF])
    got = framer.CommandFramer().feed(factory + codec.read_reg(0, broadcast=True))
    assert got == [factory, codec.read_reg(0, broadcast=True)]
    d = codec.decode_command(factory)
    assert d['kind'] == 'job' and d['crc_ok']


def test_frame_decode_names_registers_and_fields():
    out = subprocess.run([sys.executable, '-m', 'agent', 'frame', 'decode', '--family', 'BM1368',
                          '55AA5109003C8000800C11', '55AA51090018F000C10004',
                          '55AA510900B00002000 01F'.replace(' ', ''),
                          '55AA51090010 00001A1F 08'.replace(' ', '')],
                         capture_output=True, text=True, timeout=60)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r['reg_name'] for r in rows] == ['CORE_MAILBOX', 'MISC_CONTROL', 'TEMP_SENSOR_CTRL',
                                             'HASH_COUNTING_NUMBER']
    assert rows[0]['fields']['core_reg_name'] == 'clock_delay'
    assert rows[1]['fields']['report_enables'] == [28, 29, 30, 31]
    assert rows[2]['fields']['srst_release'] and not rows[2]['fields']['power_down']
    assert rows[3]['fields']['crystal_ticks'] == 0x1A1F


def test_dry_run_refuses_chains_and_ticket_masks_no_chip_can_take():
    # one-byte chip addresses: a 257th chip would share an address (chips 0 and 256)
    assert sum(1 for d in dry_run(families.get('BM1368'), 256, 490.0)
               if d.get('step') == 'address') == 256
    with pytest.raises(ChainError, match='at most 256'):
        dry_run(families.get('BM1368'), 257, 490.0)
    for bits in (-1, 33):
        with pytest.raises(ChainError, match='0..32'):
            dry_run(families.get('BM1368'), 4, 490.0, ticket_bits=bits)


def test_chain_init_dry_run_cli_json():
    out = subprocess.run([sys.executable, '-m', 'agent', 'chain', 'init', '--dry-run', '--chip',
                          'BM1368', '--chips', '108', '--mhz', '490', '--baud', '3125000',
                          '--json'], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    frames = [f for f in doc['frames'] if 'hex' in f]
    assert all(f['decoded']['crc_ok'] for f in frames)
    assert frames[-1]['decoded']['reg_name'] == 'UART_BAUD' and frames[-1]['host_baud'] == 115200
    assert doc['frames'][-1] == {'host_baud_change': 3125000, 'from': 115200}
    assert sum(1 for f in frames if f['step'] == 'address') == 108


def test_bm1366_is_esp_miners_sequence():
    # ESP-Miner BM1366_init (its literal init frames and data arrays), 4 chips, no baud change
    n = 4
    fam = families.get('BM1366')
    s = pll.solve(fam, 485.0)
    hcn = families.hash_counting_number(fam, n, s['fb'], s['ref'], s['pd1'], s['pd2'])
    assert hcn == int(2 ** 32 / 128 / 4 * 25.0 / 485 * 0.5)
    per_chip = []
    for i in range(n):
        for reg, value in ((0xA8, 0x000701F0), (0x18, 0xF000C100), (0x3C, 0x80008540),
                           (0x3C, 0x80008020), (0x3C, 0x800082AA)):
            per_chip.append(codec.write_reg(reg, value, 64 * i))
    esp = [A4] * 3 + [READ_ID, H('55AA510900A80007000003'), H('55AA51090018FF0FC10000'),
                      INACTIVE] + [codec.set_address(64 * i) for i in range(n)] + \
        [H('55AA5109003C800085400C'), H('55AA5109003C8000802019'),
         H('55AA51090014000000FF08'), H('55AA5109005400000003 1D'.replace(' ', '')),
         H('55AA51090058021111110 6'.replace(' ', '')),
         H('55AA410900 2C007C000303'.replace(' ', ''))] + per_chip + \
        [codec.write_reg(0x10, hcn, broadcast=True), A4]
    assert without_ramp(sent('BM1366', n, 485.0)) == esp


def test_bm1397_is_esp_miners_sequence():
    # ESP-Miner BM1397_init: no version rolling, clock order/enable writes, 0x18 baud divider;
    # every PLL step is 0x70 = 0F0F0F00 twice, then 0x08 twice (flag byte 0x40, raw dividers)
    n = 2
    frames = sent('BM1397', n, 425.0, 3125000)
    head = [READ_ID, INACTIVE, codec.set_address(0), codec.set_address(128)] + \
        [codec.write_reg(r, v, broadcast=True) for r, v in (
            (0x80, 0), (0x84, 0), (0x20, 1), (0x3C, 0x80008074), (0x14, 0xFF),
            (0x68, 0xC0700111), (0x28, 0x0600000F), (0x18, 0x00007A31))]
    assert frames[:len(head)] == head
    ramp = frames[len(head):-1]
    pre = codec.write_reg(0x70, 0x0F0F0F00, broadcast=True)
    assert len(ramp) % 4 == 0 and ramp[0] == ramp[1] == pre and ramp[2] == ramp[3]
    last = int.from_bytes(ramp[-1][6:10], 'big')
    assert last >> 24 == 0x40 and pll.decode(families.get('BM1397'), last) == pytest.approx(425.0)
    assert frames[-1] == codec.write_reg(0x18, 0x00006031, broadcast=True)    # 3.125 Mbaud
    assert not any(f[5] == 0xA4 for f in frames)
    names = [d['decoded']['reg_name'] for d in dry_run(families.get('BM1397'), n, 425.0)
             if d.get('decoded', {}).get('reg') == 0x68]
    assert names == ['PLL3_PARAMETER']          # not the BM1368/70 meaning of 0x68
    assert registers.fields(0x28, 0x0600000F, families.get('BM1397')) == \
        {'fast_uart_config': '0600000F'}         # no baud: BM1397's divider is in 0x18
    assert registers.fields(0x28, 0x11300000, families.get('BM1368'))['baud'] == 3125000
