"""`hashpilot sim` command line: start-up, ports file, clean SIGTERM exit, strict arguments."""

import signal
import subprocess
import sys
import time

import pytest
import serial

from hal import codec, families, framer
from tests.simproc import REPO, SimProcess, sim_argv, start_sim


def run_sim(*args):
    return subprocess.run([sys.executable, '-m', 'agent', 'sim'] + list(args), cwd=REPO,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize('args, message', [
    (['--model', 'S21', '--fault', 'melt:board=0'], 'unknown fault kind'),
    (['--model', 'S21', '--fault', 'chip-dead:board=0,chip=5,when=3'], "unknown key 'when'"),
    (['--model', 'S21', '--fault', 'chip-dead:board=0'], "missing key 'chip'"),
    (['--model', 'S21', '--fault', 'chip-dead:board=0,chip=108'], 'chip=108 outside'),
    (['--model', 'S21', '--fault', 'corrupt:rate=lots'], 'not a valid float'),
    (['--model', 'S21', '--fault', 'fan-stop:fan=1,at=-4'], 'at must be'),
    (['--model', 'S99'], 'invalid choice'),
    (['--model', 'S21', '--time-scale', '0'], 'must be > 0'),
    (['--model', 'S21', '--fan-duty-pct', '120'], '0..100'),
    (['--model', 'S21', '--bogus'], 'unrecognized'),
    (['--model', 'S21', '--ambient-c', 'nan'], 'ambient must be within'),
    (['--model', 'S21', '--time-scale', 'inf'], 'finite'),
    (['--model', 'S21', '--sigma-f', 'nan'], 'finite'),
    (['--model', 'S21', '--chip', 'board=0,chip=3,speed=-1'], 'speed must be > 0'),
    (['--model', 'S21', '--chip', 'board=3,chip=0,dead=1'], 'outside the model'),
    (['--model', 'S21', '--lot', 'fraction=2,speed=0.9'], 'fraction within 0..1'),
    (['--model', 'S21', '--lot', 'speed=0.9'], "missing key 'fraction'"),
    ([], 'required'),
])
def test_bad_arguments_exit_2_with_message(args, message):
    r = run_sim(*args)
    assert r.returncode == 2
    assert message in r.stderr


def test_sigterm_exits_cleanly_and_removes_ports_file(tmp_path):
    ports_file = tmp_path / 'ports.json'
    sim = SimProcess(sim_argv('GAMMA', ports_file=ports_file), str(ports_file), None, None)
    assert ports_file.exists()
    assert sim.ports['model'] == 'GAMMA' and len(sim.ports['chains']) == 1
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.proc.wait(10) == 0
    assert not ports_file.exists()
    sim.stop()


def test_sigint_also_exits_cleanly(tmp_path):
    sim = start_sim('GAMMA')
    sim.proc.send_signal(signal.SIGINT)
    assert sim.proc.wait(10) == 0
    sim.stop()


def discover(path):
    """Broadcast chip-ID read on a chain; the answer frames until 0.4 s of silence."""
    port = serial.serial_for_url(path, baudrate=115200, timeout=0.02)
    port.write(codec.read_reg(families.REG_CHIP_ID, broadcast=True))
    fr = framer.ResponseFramer(9)
    got = []
    last = time.monotonic()
    while time.monotonic() - last < 0.4:
        data = port.read(4096)
        if data:
            last = time.monotonic()
            got += fr.feed(data)
    port.close()
    return got


@pytest.mark.parametrize('model, chips, chip_id', [('GAMMA', 1, 0x1370), ('S19JPRO', 126, 0x1362)])
def test_other_models_enumerate(model, chips, chip_id):
    with start_sim(model) as sim:
        got = discover(sim.ports['chains'][-1])
        ids = [codec.decode_response(f)['value'] >> 16 for f in got]
        assert ids == [chip_id] * chips


def test_slave_reopen_and_host_gone_do_not_crash():
    with start_sim('S21') as sim:
        path = sim.ports['chains'][0]
        for _ in range(3):
            port = serial.serial_for_url(path, baudrate=115200, timeout=0.02)
            port.write(codec.read_reg(families.REG_CHIP_ID, broadcast=True))
            port.close()                  # answers go nowhere
        time.sleep(0.3)
        assert sim.alive()
        port = serial.serial_for_url(path, baudrate=115200, timeout=0.3)
        port.write(codec.read_reg(families.REG_CHIP_ID, 0))
        assert len(port.read(9 * 108)) > 0
        port.close()
        assert sim.stop() == 0


def test_population_options_reach_the_chips(tmp_path):
    truth = tmp_path / 'truth.jsonl'
    extra = ['--chip', 'board=0,chip=0,dead=1', '--chip', 'board=1,chip=7,speed=0.7,leak=3',
             '--lot', 'fraction=0.5,speed=0.9', '--sigma-f', '0.02']
    with start_sim('S21', truth=truth, extra=extra) as sim:
        got = discover(sim.ports['chains'][0])
        head = sim.truth_lines()[0]
    assert len(got) == 107
    assert head['chips'][0][0]['dead'] is True
    assert head['chips'][1][7]['speed'] == 0.7 and head['chips'][1][7]['leak'] == 3.0
    assert head['sigma_f'] == 0.02
    slow = sum(1 for b in head['chips'] for c in b if c['speed'] < 0.96)
    assert 100 < slow < 230           # about half of 324 chips in the 0.9 lot
