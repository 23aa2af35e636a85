"""Store: telemetry series land in a real VictoriaMetrics (Debian package) once per message even
when written twice; chip snapshots are float32 arrays per message in SQLite, one row per
(site, rig, boot_id, seq)."""

import subprocess
import time
import urllib.request

from broker import free_port
from fleet import store
from mqtt_schema import bench as schema_bench
from mqtt_schema import codec, consumer, payloads


def _messages(n):
    status = schema_bench.sample_status('S21', 3)
    sess = payloads.new_session('cafe0001')
    t0 = int(time.time() * 1000) - 180000   # older than VictoriaMetrics' 30 s query latency offset
    tele = [consumer.decode('telemetry', codec.encode(payloads.build_telemetry(status, sess, t0 + i * 10000)))
            for i in range(n)]
    chips = consumer.decode('chips', codec.encode(payloads.build_chips(status, sess, t0)))
    return status, tele, chips


def test_victoria_metrics_keeps_one_sample_per_message(tmp_path):
    port = free_port()
    proc = subprocess.Popen(store.vm_command(str(tmp_path / 'vm'), port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen('http://127.0.0.1:%d/health' % port, timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < end, 'victoria-metrics did not start'
                time.sleep(0.1)
        vm = store.VictoriaMetrics('http://127.0.0.1:%d' % port)
        _status, tele, _chips = _messages(5)
        lines = [ln for m in tele for ln in store.telemetry_lines('s1', 'r1', m)]
        assert len(lines) == 5 * 4          # rig line + 3 board lines per message
        vm.write(lines)
        vm.write(lines[:8])                 # a duplicate delivery
        vm.flush()
        res = vm.query('count_over_time(hp_hashrate_ghs{site="s1",rig="r1"}[5m])')
        assert [float(r['value'][1]) for r in res] == [5.0]
        res = vm.query('count_over_time(hp_board_temp_max_c{rig="r1"}[5m])')
        assert sorted(r['metric']['board'] for r in res) == ['0', '1', '2']
        assert all(float(r['value'][1]) == 5.0 for r in res)
        last = vm.query('last_over_time(hp_hashrate_ghs{rig="r1"}[5m])')
        assert abs(float(last[0]['value'][1]) - tele[-1]['hashrate_ghs']) < 1e-6
    finally:
        proc.terminate()
        proc.wait(20)


def test_chip_store_rows_are_arrays_and_unique(tmp_path):
    status, _tele, chips = _messages(1)
    cs = store.ChipStore(str(tmp_path / 'c.sqlite'))
    row = ('s1', 'r1', chips['boot_id'], chips['seq'], chips['ts_ms'], chips)
    cs.write([row])
    cs.write([row, row])
    assert cs.count() == 1
    (ts, seq, arrays, per_board), = cs.snapshots('s1', 'r1')
    assert per_board == 108 and len(arrays['temp_c']) == 3 * 108
    want = [c['temp_c'] for b in status['boards'] for c in b['chips']]
    for got, w in zip(arrays['temp_c'], want):
        assert (got is None and w is None) or abs(got - w) < 0.01
    cs.close()
