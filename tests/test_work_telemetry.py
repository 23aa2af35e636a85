"""Pool state and nonce-based chip figures reach telemetry, chips and meta (schema v1 fields
added, nothing renamed), without worker names or passwords."""

from mqtt_schema import codec, consumer, fields as F, payloads
from hal import models


def _status():
    chips = [{'temp_c': 60.0, 'freq_mhz': 490.0, 'hashrate_ghs': 600.0, 'err_pct': 0.1,
              'state': 'ok', 'nonce_hashrate_ghs': 580.0, 'hw_err_pct': 0.0},
             {'temp_c': 61.0, 'freq_mhz': 490.0, 'hashrate_ghs': 610.0, 'err_pct': 0.2,
              'state': 'ok', 'nonce_hashrate_ghs': None, 'hw_err_pct': 100.0}]
    pools = [{'index': 0, 'url': 'stratum+tcp://pool.example:3333', 'state': 'down',
              'connected': False, 'difficulty': None, 'accepted': 10, 'rejected': 1, 'stale': 2,
              'duplicate': 0, 'last_share_age_s': 12.5},
             {'index': 1, 'url': 'stratum+ssl://backup.example:443', 'state': 'up',
              'connected': True, 'difficulty': 8192.0, 'accepted': 5, 'rejected': 0, 'stale': 0,
              'duplicate': 0, 'last_share_age_s': 0.4}]
    return {'state': 'running', 'hashrate_ghs': 1210.0, 'boards': [{'index': 0, 'chips': chips}],
            'pools': pools}


def test_pools_and_nonce_figures_round_trip():
    s = payloads.new_session('b1')
    tel = consumer.decode('telemetry', codec.encode(payloads.build_telemetry(_status(), s), 'cbor'))
    pools = tel['pools']
    assert [p['url'] for p in pools] == ['stratum+tcp://pool.example:3333',
                                          'stratum+ssl://backup.example:443']
    assert pools[1]['connected'] is True and pools[1]['difficulty'] == 8192.0
    assert pools[0]['stale'] == 2 and pools[0]['last_share_age_s'] in (12, 13)
    chips = consumer.decode('chips', codec.encode(payloads.build_chips(_status(), s), 'cbor'))
    b = chips['boards'][0]
    assert b['nonce_hashrate_ghs'] == [580.0, None] and b['hw_err_pct'] == [0.0, 100.0]
    meta = consumer.decode('meta', codec.encode(payloads.build_meta(
        models.get('S21'), s, pools=['stratum+tcp://pool.example:3333']), 'cbor'))
    assert meta['pools'] == ['stratum+tcp://pool.example:3333']
    assert 'pools' in [f[1] for f in F.TELEMETRY]


def test_without_work_path_nothing_new_is_sent():
    st = _status()
    st.pop('pools')
    for c in st['boards'][0]['chips']:
        c.pop('nonce_hashrate_ghs')
        c.pop('hw_err_pct')
    s = payloads.new_session('b1')
    assert 'pl' not in payloads.build_telemetry(st, s)
    assert 'hn' not in payloads.build_chips(st, s)['bd'][0]
