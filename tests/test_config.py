"""Strict config: the example is valid; typos, wrong types and ranges stop start-up with key and line."""

import argparse
import subprocess
import sys

import pytest

from agent import config


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_example_is_complete_and_valid(tmp_path):
    path = write(tmp_path, 'ex.toml', config.example())
    cfg = config.load_file(path)
    assert cfg == config.defaults()
    for section, opts in config.SCHEMA.items():
        for key in opts:
            assert '\n%s = ' % key in config.example()


@pytest.mark.parametrize('name,text,needle', [
    ('a.toml', '[rig]\nsite = "a"\n\n[mqtt]\nbrokr = "x:1"\n', 'a.toml:5: unknown key mqtt.brokr'),
    ('b.toml', '[rgi]\nsite = "a"\n', 'b.toml:1: unknown section [rgi]'),
    ('c.toml', '[fan]\nmin_pct = "low"\n', 'c.toml:2: fan.min_pct'),
    ('d.toml', '[fan]\nmin_pct = 150\n', 'out of range'),
    ('e.toml', '[mqtt]\nformat = "xml"\n', 'must be one of'),
    ('f.toml', '[rig\nsite=1\n', 'f.toml'),
    ('g.ini', '[telemetry]\npoll_s = fast\n', 'g.ini:2: telemetry.poll_s'),
    ('h.ini', '[rig]\nsite = a/b\n', 'rig.site'),
    ('i.toml', '[safety]\ntemp_hot_c = 96\ntemp_danger_c = 95\n', 'temp_hot_c must be below'),
    ('j.toml', '[mqtt]\nbroker = "nohostport"\n', 'expected host:port'),
    ('k.toml', 'site = "x"\n', 'settings belong in a [section]'),
    ('l.toml', '[mqtt]\npassword_file = "/p"\n', 'needs mqtt.username'),
])
def test_bad_configs_name_the_key(tmp_path, name, text, needle):
    path = write(tmp_path, name, text)
    with pytest.raises(config.ConfigError) as e:
        config.load_file(path)
    assert needle in str(e.value)


def test_ini_values_are_typed(tmp_path):
    path = write(tmp_path, 'ok.ini', '[telemetry]\npoll_s = 2.5\n[rig]\nchains = a, b\nbaud = 3125000\n')
    cfg = config.load_file(path)
    assert cfg['telemetry']['poll_s'] == 2.5
    assert cfg['rig']['chains'] == ['a', 'b']
    assert cfg['rig']['baud'] == 3125000


def test_flags_override_file(tmp_path):
    path = write(tmp_path, 'f.toml', '[rig]\nsite = "file"\nrig = "r1"\n')
    p = argparse.ArgumentParser()
    config.add_flags(p)
    cfg = config.from_args(p.parse_args(['--config', path, '--site', 'flag', '--broker', 'h:1884']))
    assert cfg['rig']['site'] == 'flag' and cfg['rig']['rig'] == 'r1'
    assert cfg['mqtt']['broker'] == 'h:1884'
    with pytest.raises(config.ConfigError):
        config.from_args(p.parse_args(['--site', 'bad/site']))


def test_cli_check_exit_codes(tmp_path):
    bad = write(tmp_path, 'bad.toml', '[fan]\nmode = "turbo"\n')
    r = subprocess.run([sys.executable, '-m', 'agent', 'config', 'check', bad],
                       capture_output=True, text=True)
    assert r.returncode == 2 and 'fan.mode' in r.stderr
