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
    for spec in config.SECTIONS:
        for o in spec['options']:
            # array sections ([[pool]]) have no default entry: their keys are shown commented
            form = '\n# %s = ' if spec['array'] else '\n%s = '
            assert form % o['key'] in config.example()


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


@pytest.mark.parametrize('name,text,needle', [
    ('n.toml', '[safety]\nhold_s = nan\n', 'n.toml:2: safety.hold_s = nan: expected a finite number'),
    ('o.toml', '[rig]\nfreq_mhz = inf\n', 'o.toml:2: rig.freq_mhz'),
    ('p.ini', '[fan]\nmin_pct = nan\n', 'p.ini:2: fan.min_pct'),
    ('q.ini', '[mqtt]\nkeepalive_s = inf\n', 'q.ini:2: mqtt.keepalive_s'),
    ('r.toml', '[safety]\nmax_trips = -inf\n', 'expected an integer'),
])
def test_non_finite_numbers_are_refused_by_the_type(tmp_path, name, text, needle):
    path = write(tmp_path, name, text)
    with pytest.raises(config.ConfigError) as e:
        config.load_file(path)
    assert needle in str(e.value)


def test_one_schema_for_safety_and_mqtt_bounds(tmp_path):
    """The [safety] section is the supervisor's own settings table: one range per key."""
    from agent.mqtt_link import LINK, SECTION as MQTT
    from agent.safety import Supervisor
    from hal import models
    spec = config.BY_NAME['safety']
    assert spec['by_key']['watchdog_s']['lo'] == 2.0
    assert spec['by_key']['temp_hot_c']['lo'] == 30.0 and spec['by_key']['temp_hot_c']['auto'] == 0.0
    # a key the supervisor knows is a key the config file accepts, and the other way round
    path = write(tmp_path, 's.toml', '[safety]\nhold_s = 30\nsensor_disagree_c = 0\n'
                                     'temp_hot_c = 0\n')
    cfg = config.load_file(path)
    sup = Supervisor(models.get('S21'), dict(cfg['safety'], fan=dict(cfg['fan'])))
    assert sup.cfg['hold_s'] == 30.0 and sup.cfg['temp_hot_c'] == models.get('S21')['temp_hot_c']
    with pytest.raises(config.ConfigError, match='out of range 30.0..130.0'):
        config.load_file(write(tmp_path, 't.toml', '[safety]\ntemp_hot_c = 20\n'))
    # the link reuses the [mqtt] options: one default, one range
    assert LINK['by_key']['backoff_max_s'] is MQTT['by_key']['backoff_max_s']


def test_a_feature_section_and_an_array_of_tables(tmp_path, monkeypatch):
    """How a feature adds its section: options.section + one entry in config.SECTIONS."""
    from agent import options
    pool = options.section('pool', [
        options.opt('url', 'str', '', 'stratum URL'),
        options.opt('priority', 'int', 0, 'lower first', 0, 99),
    ], array=True)
    widget = options.section('widget', [options.opt('port', 'int', 4028, 'TCP port', 1, 65535)])
    monkeypatch.setattr(config, 'SECTIONS', config.SECTIONS + [widget, pool])
    monkeypatch.setattr(config, 'BY_NAME', dict((s['name'], s) for s in config.SECTIONS))
    path = write(tmp_path, 'p.toml', '[widget]\nport = 4029\n\n[[pool]]\nurl = "a"\n\n'
                                     '[[pool]]\nurl = "b"\npriority = 1\n')
    cfg = config.load_file(path)
    assert cfg['widget'].getint('port') == 4029
    assert [(p['url'], p.getint('priority')) for p in cfg['pool']] == [('a', 0), ('b', 1)]
    bad = write(tmp_path, 'b.toml', '[[pool]]\nurl = "a"\n[[pool]]\nurl = "b"\nprio = 1\n')
    with pytest.raises(config.ConfigError, match=r'b.toml:5: unknown key pool\[1\].prio'):
        config.load_file(bad)
    ini = write(tmp_path, 'p.ini', '[pool main]\nurl = a\n[pool backup]\nurl = b\npriority = 200\n')
    with pytest.raises(config.ConfigError, match=r'p.ini:5: pool\[1\].priority'):
        config.load_file(ini)
    assert '# [[pool]]' in config.example()
    assert config.load_file(write(tmp_path, 'e.toml', config.example()))['pool'] == []


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
