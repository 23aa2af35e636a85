"""A new user's first run: commands that work from anywhere, clear refusals, honest help texts,
README figures that match the code, a demo view that explains itself, one demo per broker."""

import os
import re
import subprocess
import sys

import pytest

from agent import demo
from agent.autotune import png
from agent.tune_cli import progress_line
from mqtt_schema import codec, doc, payloads
from mqtt_schema.bench import sample_status

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)


def hashpilot(*args, cwd=REPO, **kw):
    return subprocess.run([sys.executable, '-m', 'agent'] + list(args), cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=120, **kw)


def test_schema_doc_from_another_directory_writes_the_repository_doc(tmp_path):
    r = hashpilot('schema', 'doc', cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    path = os.path.join(REPO, 'docs', 'mqtt-schema.md')
    assert path in r.stdout
    with open(path) as f:
        assert f.read() == doc.markdown()      # and the committed doc is current


def test_schema_decode_notices_a_wrong_topic(tmp_path):
    s = payloads.new_session()
    tele = tmp_path / 'tele.cbor'
    tele.write_bytes(codec.encode(payloads.build_telemetry(sample_status('S21'), s), 'cbor'))
    r = hashpilot('schema', 'decode', '--topic', 'chips', str(tele))
    assert r.returncode == 1 and 'wrong --topic' in r.stderr and 'fits: telemetry' in r.stderr
    r = hashpilot('schema', 'decode', '--topic', 'hashpilot/v1/s/r/telemetry', str(tele))
    assert r.returncode == 0 and '"hashrate_ghs"' in r.stdout


def test_output_into_a_closed_pipe_is_not_a_traceback():
    proc = subprocess.Popen([sys.executable, '-m', 'agent', 'schema', 'doc', '--out', '-'],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                      # like `| head` that has read enough
    _, err = proc.communicate(timeout=60)
    assert b'Traceback' not in err and b'BrokenPipe' not in err, err
    assert proc.returncode in (0, 141)


def test_payload_bench_runs_as_the_readme_says_and_its_figures_are_the_readme_figures():
    with open(os.path.join(REPO, 'README.md')) as f:
        readme = f.read()
    assert '../shared' not in readme                   # a clone has no ../shared
    assert '.venv/bin/python -m mqtt_schema.bench' in readme
    r = subprocess.run([sys.executable, '-m', 'mqtt_schema.bench'], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    chips = re.search(r'S21 +chips snapshot .*?CBOR (\d+) bytes', r.stdout).group(1)
    tele = re.search(r'S21 +telemetry: CBOR (\d+) bytes', r.stdout).group(1)
    assert 'chips snapshot %s B, telemetry %s B' % (chips, tele) in readme


@pytest.mark.parametrize('argv', [['demo'], ['bench'], ['bench', 'autotune'], ['work']])
def test_help_texts_are_whole_sentences(argv):
    r = hashpilot(*(argv + ['--help']))
    assert r.returncode == 0, r.stderr
    text = r.stdout.split('\n\n')
    description = ' '.join(text[1].split()) if len(text) > 1 and not text[1].startswith(
        ('options', 'positional')) else ''
    if description:
        assert description.endswith(('.', ')')), description
    if argv == ['bench', 'autotune']:
        opts = re.findall(r'^  (--[a-z-]+)( [A-Z_]+)?(  +\S.*)?$', r.stdout, re.M)
        without = [o[0] for o in opts if not o[2]]
        # an option whose help is on the next line is fine; one with none at all is not
        for name in without:
            after = r.stdout.split(name, 1)[1].split('\n', 2)
            assert len(after) > 1 and after[1].startswith(' ' * 20), name


def test_frame_encode_refuses_a_frequency_outside_the_family_limits():
    r = hashpilot('frame', 'encode', 'pll', '--chip', 'BM1368', '--mhz', '5000')
    assert r.returncode == 2 and 'refused' in r.stderr and r.stdout == ''
    r = hashpilot('frame', 'encode', 'pll', '--chip', 'BM1368', '--mhz', '485')
    assert r.returncode == 0 and 'reg 0x08' in r.stdout


def test_tune_report_on_a_file_that_is_not_a_result(tmp_path):
    junk = tmp_path / 'notes.txt'
    junk.write_text('hello\n')
    r = hashpilot('tune', 'report', str(junk))
    assert r.returncode == 2 and 'not a tune result' in r.stderr and 'JSON' in r.stderr
    other = tmp_path / 'other.json'
    other.write_text('{"a": 1}')
    r = hashpilot('tune', 'report', str(other))
    assert r.returncode == 2 and 'not a tune result' in r.stderr


def test_png_writes_millivolt_not_megavolt():
    a, b = png.Canvas(40, 20), png.Canvas(40, 20)
    a.text(0, 0, 'mV')
    b.text(0, 0, 'MV')
    assert a.px != b.px and 'm' in png._FONT


def test_tune_eta_is_on_the_users_clock_and_simulated_time_is_labelled():
    st = {'progress_pct': 10.0, 'stage': 'search', 'eta_s': 2641.0, 'elapsed_s': 293.0,
          'power_w': 3300.0, 'good_ths': 190.0, 'j_per_th': 17.4, 'board_mv': [13800]}
    line = progress_line(st, wall_elapsed_s=15.0, time_scale=20.0)
    assert 'ETA 2:15' in line and 'simulated 4:53 at x20' in line and '44:01' not in line
    assert 'simulated' not in progress_line(st, wall_elapsed_s=15.0, time_scale=1.0)


def test_demo_view_labels_sensors_shows_data_age_and_explains_a_cool_die():
    now = [100.0]
    view = demo.View('hashpilot/v1/demo/s21/', clock=lambda: now[0])
    s = payloads.new_session()
    status = sample_status('S21')
    for b in status['boards']:
        b['temps_c'] = [31.0, 52.0]
        for c in b['chips']:
            c['temp_c'] = 45.0                # still warming: below the outlet sensor

    class Msg:
        def __init__(self, kind, payload):
            self.topic = 'hashpilot/v1/demo/s21/' + kind
            self.payload = codec.encode(payload, 'cbor')

    view.on_message(None, None, Msg('telemetry', payloads.build_telemetry(status, s)))
    now[0] = 107.0
    screen = view.render()
    assert 'intake' in screen and 'outlet' in screen
    assert 'telemetry received 7 s ago' in screen
    assert 'die below the outlet sensor' in screen and 'time constant' in screen
    empty = demo.View('hashpilot/v1/demo/s21/').render()
    assert 'first numbers come about 15 s after start' in empty


def test_a_second_demo_on_the_same_broker_is_detected(capsys):
    first = demo._lock('127.0.0.1', 47999)
    try:
        assert first is not None
        assert demo._lock('127.0.0.1', 47999) is None
        err = capsys.readouterr().err
        assert 'another demo (pid %d)' % os.getpid() in err and '--broker 127.0.0.1:48000' in err
        other = demo._lock('127.0.0.1', 47998)   # its own broker address: fine
        assert other is not None
        other.close()
    finally:
        first.close()
    again = demo._lock('127.0.0.1', 47999)       # released when the first demo ends
    assert again is not None
    again.close()


def test_firmware_install_needs_an_existing_explicit_root_and_says_what_it_installs(tmp_path):
    from firmware_hooks import install
    from tests.test_firmware_install import fake_binary, make_root
    binp = str(fake_binary(tmp_path / 'hp', '1.0'))
    r = hashpilot('firmware', 'install', '--binary', binp)
    assert r.returncode == 2 and '--root' in r.stderr           # no silent default of /
    missing = tmp_path / 'no-such-root'
    r = hashpilot('firmware', 'install', '--root', str(missing), '--binary', binp)
    assert r.returncode != 0 and 'no such directory' in r.stderr and not missing.exists()
    h = hashpilot('firmware', 'install', '--help').stdout
    assert 'default: this executable' not in h and 'built binary' in ' '.join(h.split())
    logged = []
    install.install(str(make_root(tmp_path)), binp, log=logged.append)
    assert any('is a script' in m and 'make build' in m for m in logged), logged
