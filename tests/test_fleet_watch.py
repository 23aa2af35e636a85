"""`hashpilot fleet watch` driven the way a person uses it: keys through Textual's pilot, the
screen read back; one run fed by a real Mosquitto."""

import asyncio
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleet import client as fclient
from fleet import state as fstate
from fleet import watch
from tests.broker import Broker
from tests.fleetfake import FakeFleet


def _text(app, wid):
    return str(app.query_one(wid).render())


def _run(app, steps, size=(160, 50)):
    async def go():
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            for step in steps:
                await step(pilot)
    asyncio.run(go())


def test_watch_sort_filter_and_detail_heat_map():
    st = fstate.FleetState()
    FakeFleet(n=12, sites=('north', 'south'), chips_per_board=20).feed(st, int(time.time() * 1000))
    app = watch.WatchApp(st)
    seen = {}

    async def first(pilot):
        seen['totals'] = _text(app, '#totals')
        seen['table'] = _text(app, '#table')

    async def sort_by_power(pilot):
        for _ in range(2):              # key -> ths -> w
            await pilot.press('s')
        await pilot.press('r')          # highest first
        await pilot.pause()
        seen['sorted'] = [r['key'] for r in app.rows]
        seen['sorted_table'] = _text(app, '#table')

    async def filter_alarm(pilot):
        await pilot.press('slash')
        for ch in 'board_hot':
            await pilot.press(ch)
        await pilot.press('enter')
        await pilot.pause()
        seen['filtered'] = [r['key'] for r in app.rows]
        seen['filtered_table'] = _text(app, '#table')

    async def open_rig(pilot):
        await pilot.press('down')
        await pilot.press('enter')
        await pilot.pause()
        seen['detail_temp'] = str(app.screen.query_one('#detail').render())
        await pilot.press('e')
        await pilot.pause()
        seen['detail_err'] = str(app.screen.query_one('#detail').render())
        await pilot.press('escape')
        await pilot.pause()
        seen['back'] = _text(app, '#table')

    _run(app, [first, sort_by_power, filter_alarm, open_rig])
    assert 'site north' in seen['totals'] and 'site south' in seen['totals']
    assert '12 of 12 rigs' in seen['totals']
    assert 'north/rig-0000' in seen['table'] and 'online' in seen['table']
    watts = [st.rig(k).row['w'] for k in seen['sorted']]
    assert watts == sorted(watts, reverse=True) and 'W*' in seen['sorted_table']
    hot = sorted(r.site + '/' + r.name for r in FakeFleet(n=12, sites=('north', 'south')).rigs if r.hot)
    assert sorted(seen['filtered']) == hot and len(hot) == 2
    assert 'board_hot' in seen['filtered_table']
    second = seen['filtered'][1]
    assert second in seen['detail_temp'] and 'temp heat map' in seen['detail_temp']
    assert 'board 2  20 chips' in seen['detail_temp'] and 'ALARM warning board_hot' in seen['detail_temp']
    assert 'err heat map' in seen['detail_err']
    assert second in seen['back']


def test_watch_fed_by_mosquitto_shows_live_rigs_and_offline_will():
    with Broker() as b:
        st = fstate.FleetState()
        fleet = FakeFleet(n=4, sites=('lab',), chips_per_board=8)
        with fclient.FleetClient(st, '127.0.0.1:%d' % b.port):
            pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            pub.connect('127.0.0.1', b.port)
            pub.loop_start()
            for topic, data, retain in fleet.messages(int(time.time() * 1000)):
                pub.publish(topic, data, qos=1, retain=retain).wait_for_publish(5)
            from mqtt_schema import codec, payloads
            r3 = fleet.rigs[3]
            pub.publish(r3.root() + 'status', codec.encode(payloads.build_will(r3.session, 1)), qos=1,
                        retain=True).wait_for_publish(5)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (len(st.rigs) < 4 or st.rig('lab/rig-0003').online):
                time.sleep(0.05)
            pub.loop_stop()
            pub.disconnect()
            app = watch.WatchApp(st)
            seen = {}

            async def look(pilot):
                for _ in range(50):     # the first draws happen before the table has its height
                    if 'lab/rig-0003' in _text(app, '#table'):
                        break
                    await pilot.pause(0.1)
                seen['table'] = _text(app, '#table')
                seen['totals'] = _text(app, '#totals')
            _run(app, [look])
    lines = dict((ln.split()[0], ln) for ln in seen['table'].splitlines()[1:] if ln.strip())
    assert 'online' in lines['lab/rig-0000'] and 'offline' in lines['lab/rig-0003']
    assert '3/4' in seen['totals'] and 'online' in seen['totals']
