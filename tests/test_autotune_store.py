"""Profiles (strict validation) and results on disk (atomic save, reuse, crash mid-write)."""

import json
import os

import pytest

from agent.autotune import profile as PR
from agent.autotune import store
from agent.config import ConfigError


def test_shipped_profiles_load():
    names = PR.shipped()
    assert {'eco', 'balanced', 'performance'} <= set(names)
    for n in names:
        p = PR.load(n)
        assert p['mode'] in ('power', 'hashrate', 'efficiency', 'thermal', 'heat') and p['name'] == n


@pytest.mark.parametrize('body,needle', [
    ('mode = "power"\ntarget_w = 3000\n', 'target_w'),
    ('mode = "turbo"\n', 'mode'),
    ('mode = "power"\ntemp_margin_c = "5"\n', 'temp_margin_c'),
    ('mode = "power"\nerr_target_pct = 9.0\n', 'err_target_pct'),
    ('mode = "power"\nerr_target_pct = 0.5\nerr_max_pct = 0.2\n', 'err_max_pct'),
])
def test_bad_profiles_stop_with_the_key_and_line(tmp_path, body, needle):
    f = tmp_path / 'mine.toml'
    f.write_text('# user profile\n[profile]\n' + body)
    with pytest.raises(ConfigError) as e:
        PR.load(str(f))
    assert needle in str(e.value)
    assert 'mine.toml:' in str(e.value)


def test_profile_needs_its_table(tmp_path):
    f = tmp_path / 'p.toml'
    f.write_text('mode = "power"\n')
    with pytest.raises(ConfigError):
        PR.load(str(f))
    with pytest.raises(ConfigError):
        PR.load('no-such-profile')


def test_resolve_target():
    from hal import models
    m = models.get('S21')
    assert PR.resolve_target(PR.validate({'mode': 'power', 'target_rel': 0.9}), m) == \
        pytest.approx(0.9 * 3500)
    assert PR.resolve_target(PR.validate({'mode': 'power', 'target': 3000.0}), m) == 3000.0
    assert PR.resolve_target(PR.validate({'mode': 'hashrate', 'target_rel': 1.0}), m) == \
        pytest.approx(324 * 1276 * 490e6 / 1e12)


def _result(ids, mv=13970):
    n = len(ids)
    return {'mode': 'power', 'target': 3500.0, 'profile': 'balanced', 'board_ids': ids,
            'board_mv': [mv] * n, 'freqs': [[600.0, 610.0]] * n, 'temps_c': [[60.0, 61.0]] * n,
            'err_est': [[0.002, 0.0021]] * n, 'power_w': 3499.0, 'good_ths': 219.0,
            'j_per_th': 15.98, 'mean_die_c': 62.0, 'curve': [[3600.0, 16.4, 14100]],
            'tune_s': 700.0}


def test_save_and_reuse(tmp_path):
    d = str(tmp_path / 'tune')
    ids = ['SN-A', 'SN-B', 'SN/C weird']
    paths = store.save(d, _result(ids))
    assert len(paths) == 3 and all(os.path.exists(p) for p in paths)
    saved = store.load_saved(d, ids)
    assert saved['board_mv'] == [13970] * 3 and saved['freqs'][2] == [600.0, 610.0]
    assert store.load_saved(d, ['SN-A', 'SN-B', 'SN-OTHER']) is None     # a board was swapped


@pytest.mark.parametrize('step', ['write', 'fsync'])
def test_crash_mid_write_leaves_the_old_file(tmp_path, step):
    d = str(tmp_path)
    store.save(d, _result(['SN-A']))
    p = store.path_for(d, 'SN-A')
    before = open(p).read()
    rec = json.loads(before)
    rec['board_mv'] = 12000
    with pytest.raises(OSError):
        store.atomic_write(p, json.dumps(rec).encode(), _crash_after=step)
    assert open(p).read() == before
    assert store.load_board(d, 'SN-A')['board_mv'] == 13970
    # Leftover temp files never count as results.
    assert store.load_saved(d, ['SN-A'])['board_mv'] == [13970]


def test_corrupt_or_foreign_files_are_ignored(tmp_path):
    d = str(tmp_path)
    with open(store.path_for(d, 'SN-A'), 'w') as f:
        f.write('{"version": 1, "board_id": "SN-A", "freqs_mhz": [1')
    assert store.load_board(d, 'SN-A') is None
    store.save(d, _result(['SN-B']))
    os.replace(store.path_for(d, 'SN-B'), store.path_for(d, 'SN-C'))
    assert store.load_board(d, 'SN-C') is None           # file says it belongs to SN-B


def test_report_png(tmp_path):
    from agent.autotune import report
    import struct
    import zlib
    d = str(tmp_path)
    res = _result(['SN-A', 'SN-B'])
    res['freqs'] = [[500.0 + i for i in range(108)]] * 2
    res['temps_c'] = [[50.0 + i * 0.2 for i in range(108)]] * 2
    res['curve'] = [[3600.0, 16.4, 14100], [3520.0, 16.1, 14020], [3500.0, 15.98, 13970]]
    store.save(d, res)
    out = str(tmp_path / 'r.png')
    report.render(report.load_records(d), out)
    data = open(out, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    w, h = struct.unpack('>II', data[16:24])
    assert w > 300 and h > 300
    idat = data[data.index(b'IDAT') + 4:data.index(b'IEND') - 8]
    raw = zlib.decompress(idat)
    assert len(raw) == h * (3 * w + 1)
    assert len(set(raw)) > 10                 # something was drawn
