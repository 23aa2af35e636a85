"""`python -m tests.screenshots docs/img`: the README's pictures of the dashboard and the watch view,
from a 40-rig fake fleet (real payloads) with a few hours of history, in headless Chromium.
The watch view is Textual's own SVG screenshot, rendered to PNG by the same Chromium."""

import asyncio
import os
import sys
import threading
import time

from fleet import state as fstate
from fleet import watch
from fleet.web import server
from tests.browser import Browser
from tests.fleetfake import FakeFleet


def fleet_state(n=40):
    st = fstate.FleetState()
    ff = FakeFleet(n=n, sites=('north-shed', 'south-hangar'))
    now = time.time()
    for k in range(24):           # four hours of history, one point per 10 minutes
        ts = now - 4 * 3600 + k * 600
        for r in ff.rigs:
            r.scale *= 1.0 + 0.004 * ((k * 7 + hash(r.name)) % 5 - 2)
            for topic, data, _ in r.live(int(ts * 1000), chips=False):
                st.feed(topic, data, now_s=ts)
        st.sample_sites(now_s=ts)
    for r in ff.rigs:
        for topic, data, _ in r.birth(int(now * 1000)) + r.live(int(now * 1000)):
            st.feed(topic, data)
    return st


def main(argv=None):
    out = (argv or sys.argv[1:] or ['docs/img'])[0]
    os.makedirs(out, exist_ok=True)
    st = fleet_state()
    dash = server.Dashboard(st, refresh_s=1.0)
    srv = server.make_server(dash, '127.0.0.1', 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = 'http://127.0.0.1:%d' % srv.server_address[1]
    app = watch.WatchApp(st)
    svg = os.path.join(out, 'watch.svg')

    async def shoot():
        async with app.run_test(size=(132, 30)) as pilot:
            await pilot.pause()
            for key in ('s', 's', 's', 'r'):      # sort by J/TH, worst first
                await pilot.press(key)
            await pilot.pause()
            app.save_screenshot(filename=os.path.basename(svg), path=out)
            await pilot.press('enter')
            await pilot.pause()
            app.save_screenshot(filename='watch-rig.svg', path=out)
    asyncio.run(shoot())
    with Browser(width=1280, height=820) as br:
        br.goto(base + '/')
        br.wait_js('document.querySelectorAll("#rigs tbody tr").length === 40', 30)
        br.screenshot(os.path.join(out, 'dashboard.png'))
        br.goto(base + '/rig/north-shed/rig-0002')
        br.wait_js('document.querySelectorAll("canvas.chipmap").length === 3', 30)
        br.screenshot(os.path.join(out, 'dashboard-rig.png'))
        for name in ('watch', 'watch-rig'):
            br.goto('file://' + os.path.abspath(os.path.join(out, name + '.svg')))
            time.sleep(0.5)
            # Only the terminal picture, not the empty page around it.
            box = br.js('(() => { const r = document.querySelector("svg").getBoundingClientRect();'
                        ' return [r.width, r.height]; })()')
            br.screenshot(os.path.join(out, name + '.png'), clip=(box[0], box[1]))
            os.remove(os.path.join(out, name + '.svg'))
    dash.stop.set()
    srv.shutdown()
    print('screenshots in %s' % out)


if __name__ == '__main__':
    main()
