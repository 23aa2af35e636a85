"""[[pool]] and [work] config: loaded in priority order, checked with file:line, worker names per
rig, password from a file; INI `[pool NAME]` sections work too."""

import pytest

from agent import config
from agent.options import ConfigError
from agent.work import wiring


def _load(tmp_path, text, name='rig.toml'):
    p = tmp_path / name
    p.write_text(text)
    return config.load_file(str(p))


def test_pools_in_order_and_work_section(tmp_path):
    (tmp_path / 'pw').write_text('from-file\n')
    cfg = _load(tmp_path, '[rig]\nrig = "r7"\n\n'
                '[[pool]]\nurl = "stratum+tcp://main.example:3333"\nuser = "acct"\n'
                'password_file = "%s"\n\n'
                '[[pool]]\nurl = "stratum+ssl://backup.example:443"\nuser = "acct.w9"\n\n'
                '[work]\nwindow_s = 30\nfailback_s = 120\n' % (tmp_path / 'pw'))
    assert [p['url'] for p in cfg['pool']] == ['stratum+tcp://main.example:3333',
                                                'stratum+ssl://backup.example:443']
    assert cfg['work'].getfloat('window_s') == 30.0
    pools = wiring.pool_list(cfg['pool'], cfg['rig']['rig'])
    assert [p['user'] for p in pools] == ['acct.r7', 'acct.w9']
    assert [p['password'] for p in pools] == ['from-file', 'x']


def test_no_pool_means_no_work_path(tmp_path):
    cfg = _load(tmp_path, '[rig]\nrig = "r1"\n')
    assert cfg['pool'] == [] and wiring.build(cfg, None, None, None, None) is None


@pytest.mark.parametrize('body,words', [
    ('[[pool]]\nurl = "pool.example:3333"\nuser = "a"\n', ('rig.toml:2', 'scheme')),
    ('[[pool]]\nurl = "http://pool.example:3333"\nuser = "a"\n', ('unknown scheme',)),
    ('[[pool]]\nurl = "stratum+tcp://pool.example:3333"\nuser = ""\n', ('account',)),
    ('[[pool]]\nurl = "stratum+tcp://p:1"\nuser = "a"\npassword = "x"\npassword_file = "f"\n',
     ('not both',)),
    ('[[pool]]\nurl = "stratum+tcp://p:1"\nuser = "a"\npasswd = "x"\n', ('passwd',)),
    ('[work]\nwindow_s = 1\n', ('window_s', 'out of range')),
])
def test_bad_pool_config_is_a_clear_error(tmp_path, body, words):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, body)
    for w in words:
        assert w in str(e.value)


def test_credentials_in_a_pool_url_are_refused_without_echoing_them(tmp_path):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, '[[pool]]\nurl = "stratum+tcp://acct.w1:s3cret@pool.example:3333"\n'
                        'user = "acct"\n')
    assert 'credentials' in str(e.value) and 's3cret' not in str(e.value)


def test_ini_pool_sections(tmp_path):
    cfg = _load(tmp_path, '[rig]\nrig = r2\n\n[pool main]\nurl = stratum+tcp://m:3333\nuser = a\n\n'
                '[pool backup]\nurl = tcp://b:3333\nuser = a\n', name='rig.ini')
    assert [p['url'] for p in cfg['pool']] == ['stratum+tcp://m:3333', 'tcp://b:3333']
