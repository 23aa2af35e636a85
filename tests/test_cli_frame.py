"""`hashpilot frame` decode/encode, run in-process."""

import json

import pytest

from hal import codec
from hal.tools import frame_cli


def run(capsys, *argv):
    rc = frame_cli.main(list(argv))
    cap = capsys.readouterr()
    lines = [json.loads(l) for l in cap.out.splitlines() if l.startswith('{')]
    return rc, lines, cap


def test_decode_command_and_response_frames(capsys):
    rc, out, _ = run(capsys, 'decode', '55 AA 52 05 00 00 0A', 'AA5513700000000006')
    assert rc == 0 and len(out) == 2
    assert out[0]['kind'] == 'command' and out[0]['op'] == 'read' and out[0]['broadcast']
    assert out[1]['kind'] == 'reg' and out[1]['value'] == 0x13700000 and out[1]['crc_ok']
    assert out[1]['family'] == 'BM1370'


def test_decode_bytes_as_separate_arguments(capsys):
    rc, out, _ = run(capsys, 'decode', *'55 AA 51 09 00 A4 90 00 FF FF 1C'.split())
    assert rc == 0 and len(out) == 1
    assert out[0]['op'] == 'write' and out[0]['reg'] == 0xA4 and out[0]['value'] == 0x9000FFFF


def test_decode_nonce_with_family(capsys):
    nonce, header = codec.encode_nonce_fields('bm1368', 0xDEADBEEF, 0x40, 5, 0x0C)
    frame = codec.nonce_response(nonce, 2, header, 0x1234, 11)
    rc, out, _ = run(capsys, 'decode', frame.hex(), '--family', 'BM1368')
    assert rc == 0
    d = out[0]
    assert (d['kind'], d['job_id'], d['core'], d['chip_addr'], d['version']) == \
        ('nonce', 0x40, 5, 0x0C, 0x1234)


def test_decode_bad_crc_and_junk_exit_1(capsys):
    rc, out, _ = run(capsys, 'decode', '0102', 'AA5513700000000007')
    assert rc == 1
    assert out[0]['kind'] == 'junk' and out[1]['crc_ok'] is False


@pytest.mark.parametrize('argv', [['decode', 'zz'], ['decode', '55A'],
                                  ['decode', '--family', 'BM9999', 'AA55']])
def test_bad_input_exit_2_with_message(capsys, argv):
    rc = frame_cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and 'error' in err


def test_bad_option_values_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        frame_cli.main(['encode', 'read', '--reg', '0x1FF'])
    assert e.value.code == 2
    assert 'outside' in capsys.readouterr().err


def test_encode_read_write_address_inactive(capsys):
    for argv, want in (
            (['encode', 'read', '--reg', '0x00', '--broadcast'], '55 AA 52 05 00 00 0A'),
            (['encode', 'inactive'], '55 AA 53 05 00 00 03'),
            (['encode', 'set-address', '--addr', '2'], '55 AA 40 05 02 00 01'),
            (['encode', 'write', '--broadcast', '--reg', '0xA4', '--value', '0x9000FFFF'],
             '55 AA 51 09 00 A4 90 00 FF FF 1C')):
        assert frame_cli.main(argv) == 0
        assert capsys.readouterr().out.strip() == want
    rc, out, _ = run(capsys, 'encode', 'write', '--addr', '2', '--reg', '0x08', '--value',
                     '0x50C20240', '--json')
    assert rc == 0 and out[0]['decoded']['chip_addr'] == 2
    assert out[0]['decoded']['value'] == 0x50C20240 and out[0]['decoded']['crc_ok']


def test_encode_pll(capsys):
    rc, out, _ = run(capsys, 'encode', 'pll', '--chip', 'BM1366', '--mhz', '485', '--json')
    assert rc == 0
    assert out[0]['reg_bytes'] == '50 C2 02 40'
    assert out[0]['frame'] == codec.write_reg(0x08, 0x50C20240, 0, True).hex(' ').upper()
    assert frame_cli.main(['encode', 'pll', '--chip', 'BM1366', '--mhz', '99999']) == 2
