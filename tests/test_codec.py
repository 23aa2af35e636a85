"""Known-answer and property tests of the BM13xx frame codec and CRCs (hal/codec.py, hal/crc.py)."""

import pytest
from hypothesis import given, strategies as st

from hal import codec, crc, families

KNOWN_COMMANDS = [
    ('55 AA 52 05 00 00 0A', lambda: codec.read_reg(0x00, broadcast=True),
     {'op': 'read', 'broadcast': True, 'chip_addr': 0, 'reg': 0}),
    ('55 AA 53 05 00 00 03', codec.chain_inactive,
     {'op': 'chain_inactive', 'broadcast': True}),
    ('55 AA 40 05 00 00 1C', lambda: codec.set_address(0x00),
     {'op': 'set_address', 'broadcast': False, 'chip_addr': 0}),
    ('55 AA 40 05 02 00 01', lambda: codec.set_address(0x02),
     {'op': 'set_address', 'broadcast': False, 'chip_addr': 2}),
    ('55 AA 51 09 00 A4 90 00 FF FF 1C', lambda: codec.write_reg(0xA4, 0x9000FFFF, broadcast=True),
     {'op': 'write', 'broadcast': True, 'reg': 0xA4, 'value': 0x9000FFFF}),
]


@pytest.mark.parametrize('hexframe,build,fields', KNOWN_COMMANDS)
def test_known_command_frames(hexframe, build, fields):
    frame = bytes.fromhex(hexframe)
    assert build() == frame
    d = codec.decode_command(frame)
    assert d['kind'] == 'command' and d['crc_ok'] is True
    for k, v in fields.items():
        assert d[k] == v


def test_known_chip_id_response():
    frame = bytes.fromhex('AA 55 13 70 00 00 00 00 06')
    assert codec.response_crc_ok(frame)
    d = codec.decode_response(frame)
    assert d == {'kind': 'reg', 'crc_ok': True, 'length': 9, 'value': 0x13700000,
                 'chip_addr': 0, 'reg': 0}
    assert codec.reg_response(0x13700000, 0, 0, 9) == frame
    assert families.by_chip_id(d['value'] >> 16)['name'] == 'BM1370'


def test_crc16_check_value_and_crc5_of_known_frame():
    assert crc.crc16_ccitt_false(b'123456789') == 0x29B1
    assert crc.crc5(bytes.fromhex('52 05 00 00')) == 0x0A


def test_corrupted_known_frame_fails_crc():
    frame = bytearray(bytes.fromhex('55 AA 51 09 00 A4 90 00 FF FF 1C'))
    frame[6] ^= 0x01
    assert codec.decode_command(bytes(frame))['crc_ok'] is False
    resp = bytearray(bytes.fromhex('AA 55 13 70 00 00 00 00 06'))
    resp[3] ^= 0x10
    assert codec.decode_response(bytes(resp))['crc_ok'] is False


def test_decode_never_raises_on_short_or_foreign_input():
    for junk in (b'', b'\x55', b'\x55\xaa', b'\xaa\x55\x00', b'\x00' * 20):
        assert codec.decode_command(junk)['kind'] == 'invalid'
        assert codec.decode_response(junk)['kind'] == 'invalid'


u8 = st.integers(0, 255)
u32 = st.integers(0, 0xFFFFFFFF)


@given(reg=u8, addr=u8, bcast=st.booleans())
def test_read_round_trip(reg, addr, bcast):
    d = codec.decode_command(codec.read_reg(reg, addr, broadcast=bcast))
    assert (d['kind'], d['op'], d['crc_ok'], d['reg'], d['chip_addr'], d['broadcast']) == \
        ('command', 'read', True, reg, addr, bcast)


@given(reg=u8, addr=u8, value=u32, bcast=st.booleans())
def test_write_round_trip(reg, addr, value, bcast):
    frame = codec.write_reg(reg, value, addr, broadcast=bcast)
    assert len(frame) == 11 and frame[3] == 9
    d = codec.decode_command(frame)
    assert (d['op'], d['crc_ok'], d['reg'], d['chip_addr'], d['value'], d['broadcast']) == \
        ('write', True, reg, addr, value, bcast)


@given(addr=u8)
def test_set_address_round_trip(addr):
    d = codec.decode_command(codec.set_address(addr))
    assert (d['op'], d['crc_ok'], d['chip_addr'], d['broadcast']) == ('set_address', True, addr, False)


def test_chain_inactive_round_trip():
    d = codec.decode_command(codec.chain_inactive())
    assert (d['op'], d['crc_ok'], d['broadcast']) == ('chain_inactive', True, True)


@given(payload=st.binary(min_size=1, max_size=80))
def test_job_round_trip(payload):
    frame = codec.job(payload)
    assert frame[3] == len(payload) + 4
    d = codec.decode_command(frame)
    assert d['kind'] == 'job' and d['crc_ok'] and d['payload'] == payload


@given(value=u32, addr=u8, reg=u8, flen=st.sampled_from([9, 11]))
def test_register_response_round_trip(value, addr, reg, flen):
    frame = codec.reg_response(value, addr, reg, flen)
    assert len(frame) == flen and codec.response_crc_ok(frame)
    d = codec.decode_response(frame)
    assert (d['kind'], d['value'], d['chip_addr'], d['reg'], d['crc_ok']) == \
        ('reg', value, addr, reg, True)


@given(rand=u32, job=u8, core=st.integers(0, 15), addr=st.integers(0, 127).map(lambda a: a * 2),
       version=st.integers(0, 0xFFFF), flen=st.sampled_from([9, 11]),
       layout=st.sampled_from(['bm1366', 'bm1368', 'bm1370', 'bm1397']))
def test_nonce_response_round_trip_every_layout(rand, job, core, addr, version, flen, layout):
    # Field widths per layout: what the header can carry.
    if layout == 'bm1366':
        job, core = job & 0xF8, core & 0x07
    elif layout in ('bm1368', 'bm1370'):
        job = job & 0x78
    else:               # bm1397: job id bits 7..2, midstate index bits 1..0 (ESP-Miner)
        job, core = job & 0xFC, core & 0x03
    nonce, header = codec.encode_nonce_fields(layout, rand, job, core, addr)
    frame = codec.nonce_response(nonce, 0x5A, header, version, flen)
    assert len(frame) == flen
    d = codec.decode_response(frame, layout)
    assert d['kind'] == 'nonce' and d['crc_ok'] and d['nonce'] == nonce
    assert d['job_id'] == job
    assert d['core'] == core
    if layout == 'bm1370':
        assert d['chip_addr'] is None
        assert nonce == rand
    else:
        assert d['chip_addr'] == addr
    if flen == 11:
        assert d['version'] == version


@given(body=st.binary(min_size=6, max_size=8), bit=st.integers(0, 8 * 8 - 1))
def test_single_bit_error_in_response_detected(body, bit):
    flen = len(body) + 3 if len(body) in (6, 8) else 9
    frame = bytearray(codec.response(body, 0, flen))
    pos = 2 + (bit // 8) % (flen - 2)
    frame[pos] ^= 1 << (bit % 8)
    assert not codec.response_crc_ok(bytes(frame))
