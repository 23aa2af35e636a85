"""`python -m fleet.viewbench --rigs 5000`: the operator views at fleet scale, one JSON report.

Starts a Mosquitto (fleet/bench.py's large-site broker) and `hashpilot fleet loadgen` publishing
real payloads for N rigs, feeds one FleetState from one MQTT connection (as `fleet watch` and
`fleet serve` do), and measures: messages applied vs offered, the watch view's redraw and key
response times (Textual, headless), the dashboard's API, SSE snapshot and /metrics times and
sizes, and (with --chromium) the time until the fleet page in headless Chromium shows live rows.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
import urllib.request

import psutil


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def _get(url):
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read()
    return time.perf_counter() - t0, len(body)


def watch_figures(state, presses=10):
    from fleet import watch
    app = watch.WatchApp(state, refresh_s=3600)
    out = {}

    async def go():
        async with app.run_test(size=(200, 60)) as pilot:
            await pilot.pause()
            def timed(fn, n=10):
                xs = []
                for _ in range(n):
                    fn()
                    xs.append(app.last_redraw_s)
                return 1000 * statistics.median(xs), 1000 * max(xs)
            out['redraw_snapshot_ms'] = timed(lambda: app.redraw())
            out['redraw_resort_ms'] = timed(lambda: app.redraw(snapshot=False))
            out['redraw_move_ms'] = timed(lambda: app.redraw(snapshot=False, resort=False))
            keys = {}
            for key in ['x'] * 3 + ['s'] * presses + ['down'] * 5 + ['r', 'pagedown', 'end', 'enter']:
                t0 = time.perf_counter()
                await pilot.press(key)
                await pilot.pause()
                keys.setdefault(key if key in ('x', 's', 'down') else 'other', []).append(time.perf_counter() - t0)
            for k, xs in keys.items():   # 'x' is unbound: the pilot's own press-to-idle time
                out['key_%s_p50_ms' % k] = 1000 * statistics.median(xs)
            out.update({'rows_drawn': app.page_rows(), 'rows': len(app.rows)})
    asyncio.run(go())
    return out


def web_figures(state, chromium):
    from fleet.web import server
    dash = server.Dashboard(state, refresh_s=1.0)
    srv = server.make_server(dash, '127.0.0.1', 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = 'http://127.0.0.1:%d' % srv.server_address[1]
    out = {}
    try:
        api = [_get(base + '/api/fleet?sort=jth&limit=200') for _ in range(5)]
        out['api_fleet_p50_ms'] = 1000 * statistics.median([a[0] for a in api])
        out['api_fleet_bytes'] = api[0][1]
        key = state.rows()[0]['key']
        rig = [_get(base + '/api/rig/' + key) for _ in range(5)]
        out['api_rig_p50_ms'] = 1000 * statistics.median([a[0] for a in rig])
        out['api_rig_bytes'] = rig[0][1]
        m = [_get(base + '/metrics') for _ in range(3)]
        out['metrics_p50_ms'] = 1000 * statistics.median([a[0] for a in m])
        out['metrics_bytes'] = m[0][1]
        if chromium:
            sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            from tests.browser import Browser
            with Browser() as br:
                t0 = time.perf_counter()
                br.goto(base + '/')
                br.wait_js('document.querySelectorAll("#rigs tbody tr").length === 200', 60)
                out['page_live_rows_s'] = time.perf_counter() - t0
                n = int(br.js('document.body.dataset.live'))
                t1 = time.perf_counter()
                br.wait_js('+document.body.dataset.live > %d' % n, 30)
                out['next_snapshot_s'] = time.perf_counter() - t1
                t2 = time.perf_counter()
                br.goto(base + '/rig/' + key)
                br.wait_js('document.querySelectorAll("canvas.chipmap").length >= 1', 120)
                out['rig_page_heatmaps_s'] = time.perf_counter() - t2
                if os.environ.get('HP_VIEWBENCH_SHOTS'):
                    d = os.environ['HP_VIEWBENCH_SHOTS']
                    br.goto(base + '/')
                    br.wait_js('document.querySelectorAll("#rigs tbody tr").length === 200', 60)
                    br.screenshot(os.path.join(d, 'dashboard-5000.png'))
    finally:
        dash.stop.set()
        srv.shutdown()
        srv.server_close()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m fleet.viewbench', description=__doc__.split('\n')[0])
    p.add_argument('--rigs', type=int, default=5000)
    p.add_argument('--warmup-s', type=float, default=75.0, help='loadgen time before measuring')
    p.add_argument('--chromium', action='store_true', help='also time the fleet page in headless Chromium')
    args = p.parse_args(argv)
    from fleet import bench
    from fleet import state as fstate
    from fleet.client import FleetClient
    bp = argparse.ArgumentParser()
    bench.add_arguments(bp)
    b = bench.Bench(bp.parse_args([]))     # the bench's defaults: one local Mosquitto
    b.start_broker()
    st = fstate.FleetState()
    fc = FleetClient(st, '127.0.0.1:%d' % b.port).start()
    me = psutil.Process()
    gen = b._py('fleet.loadgen', ['--broker', '127.0.0.1:%d' % b.port, '--rigs', str(args.rigs),
                                  '--duration-s', str(int(args.warmup_s + 240)), '--rigs-per-conn', '25'],
                'loadgen.log')
    report = {'rigs': args.rigs}
    try:
        deadline = time.monotonic() + args.warmup_s
        while time.monotonic() < deadline:
            if gen.poll() is not None:
                raise RuntimeError('loadgen exited: %s' % b.log_tail('loadgen.log'))
            time.sleep(1)
        v0, c0, t0 = st.version, me.cpu_times(), time.monotonic()
        time.sleep(20)
        v1, c1, t1 = st.version, me.cpu_times(), time.monotonic()
        report['rigs_known'] = len(st.rigs)
        report['rigs_online'] = sum(1 for r in st.rows() if r['link'] == 'online')
        report['applied_msgs_per_s'] = (v1 - v0) / (t1 - t0)
        report['offered_msgs_per_s'] = args.rigs * (1 / 10.0 + 1 / 60.0)
        report['ingest_cpu_pct_one_core'] = 100 * ((c1.user + c1.system) - (c0.user + c0.system)) / (t1 - t0)
        report['rss_mb'] = me.memory_info().rss / 2 ** 20
        report['watch'] = watch_figures(st)
        report['web'] = web_figures(st, args.chromium)
        report['load1'] = os.getloadavg()[0]
    finally:
        gen.terminate()
        gen.wait(30)
        fc.stop()
        b.stop_broker()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
