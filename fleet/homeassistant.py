"""`hashpilot fleet homeassistant --broker H:P`: Home Assistant MQTT discovery bridge.

For every rig it publishes (retained) Home Assistant discovery configs under
`<prefix>/<component>/hashpilot_<site>_<rig>/<object>/config` (prefix `homeassistant` by default),
one JSON state per telemetry on `hashpilot/ha/<site>/<rig>/state` and `online`/`offline` on
`.../availability` (from the rig's birth and Will). Home Assistant's controls (power target,
fan mode, fan duty, identify) arrive on `.../set/<what>`; the bridge checks them and sends the
validated `cmd/<op>` to the agent, which checks them again. Meant for home and office miners
(Bitaxe) that live in Home Assistant; works for any model.
"""

import argparse
import json
import re
import sys
import threading

from hal import models
from mqtt_schema import topics

BASE = 'hashpilot/ha/'
PREFIX = 'homeassistant'
MANUFACTURER = 'hashpilot'
_ID_BAD = re.compile(r'[^a-zA-Z0-9_-]')

# object id, name, state key, unit, device_class, icon
SENSORS = (
    ('hashrate', 'Hashrate', 'hashrate_ths', 'TH/s', None, 'mdi:pickaxe'),
    ('power', 'Power', 'power_w', 'W', 'power', None),
    ('efficiency', 'Efficiency', 'j_per_th', 'J/TH', None, 'mdi:lightning-bolt-circle'),
    ('temp_max', 'Hottest chip', 'temp_max_c', '°C', 'temperature', None),
    ('fan', 'Fan duty', 'fan_pct', '%', None, 'mdi:fan'),
    ('alarms', 'Active alarms', 'alarm_count', None, None, 'mdi:alert'),
)


def node_id(site, rig):
    """Discovery node id: HA accepts [a-zA-Z0-9_-] only; the site/rig names may hold more."""
    return _ID_BAD.sub('_', 'hashpilot_%s_%s' % (site, rig))


def power_range_w(model_name):
    """(min, max, step) of the power target: the agent's own bounds for the model
    (20 % of nameplate .. the PSU limit); (None, None, 1) for an unknown model."""
    try:
        m = models.get(model_name)
    except KeyError:
        return None, None, 1.0
    step = 1.0 if m['nameplate_w'] >= 100 else 0.5
    return round(0.2 * m['nameplate_w'], 1), float(m['power_limit_w']), step


def _common(site, rig, obj, name, model, firmware):
    root = BASE + site + '/' + rig + '/'
    nid = node_id(site, rig)
    dev = {'identifiers': [nid], 'name': '%s %s' % (site, rig), 'manufacturer': MANUFACTURER,
           'suggested_area': site}
    if model:
        dev['model'] = model
    if firmware:
        dev['sw_version'] = firmware
    return {'name': name, 'unique_id': '%s_%s' % (nid, obj),
            'device': dev, 'origin': {'name': 'hashpilot fleet'},
            'availability': [{'topic': root + 'availability'}],
            'payload_available': 'online', 'payload_not_available': 'offline', 'qos': 1}


def discovery_configs(site, rig, model=None, firmware=None, boards=0, prefix=PREFIX):
    """[(topic, config dict)] for one rig: sensors, a problem binary sensor, controls."""
    root = BASE + site + '/' + rig + '/'
    nid = node_id(site, rig)
    state = root + 'state'
    out = []

    def add(component, obj, cfg):
        out.append(('%s/%s/%s/%s/config' % (prefix, component, nid, obj), cfg))

    sensors = list(SENSORS) + [('temp_board_%d' % b, 'Board %d hottest chip' % b, 'board_%d_temp_max_c' % b,
                                '°C', 'temperature', None) for b in range(boards)]
    for obj, name, key, unit, dclass, icon in sensors:
        cfg = _common(site, rig, obj, name, model, firmware)
        cfg.update({'state_topic': state, 'value_template': '{{ value_json.%s }}' % key,
                    'state_class': 'measurement'})
        if unit:
            cfg['unit_of_measurement'] = unit
        if dclass:
            cfg['device_class'] = dclass
        if icon:
            cfg['icon'] = icon
        if obj == 'alarms':
            cfg['json_attributes_topic'] = state
            cfg['json_attributes_template'] = '{{ {"alarms": value_json.alarms} | tojson }}'
        add('sensor', obj, cfg)
    cfg = _common(site, rig, 'problem', 'Problem', model, firmware)
    cfg.update({'state_topic': state, 'device_class': 'problem',
                'value_template': "{{ 'ON' if value_json.alarm_count > 0 else 'OFF' }}"})
    add('binary_sensor', 'problem', cfg)
    lo, hi, step = power_range_w(model)
    if lo is not None:
        cfg = _common(site, rig, 'power_target', 'Power target', model, firmware)
        cfg.update({'command_topic': root + 'set/power_target', 'state_topic': state,
                    'value_template': '{{ value_json.power_target_w }}', 'min': lo, 'max': hi,
                    'step': step, 'mode': 'box', 'unit_of_measurement': 'W', 'device_class': 'power',
                    'entity_category': 'config'})
        add('number', 'power_target', cfg)
    cfg = _common(site, rig, 'fan_mode', 'Fan mode', model, firmware)
    cfg.update({'command_topic': root + 'set/fan_mode', 'state_topic': state,
                'value_template': '{{ value_json.fan_mode }}', 'options': ['auto', 'manual'],
                'entity_category': 'config'})
    add('select', 'fan_mode', cfg)
    cfg = _common(site, rig, 'fan_duty', 'Fan duty (manual)', model, firmware)
    cfg.update({'command_topic': root + 'set/fan_duty', 'state_topic': state,
                'value_template': '{{ value_json.fan_pct }}', 'min': 0, 'max': 100, 'step': 1,
                'mode': 'slider', 'unit_of_measurement': '%', 'entity_category': 'config'})
    add('number', 'fan_duty', cfg)
    cfg = _common(site, rig, 'identify', 'Identify', model, firmware)
    cfg.update({'command_topic': root + 'set/identify', 'payload_press': 'PRESS', 'device_class': 'identify'})
    add('button', 'identify', cfg)
    return out


def state_payload(row, tel, controls):
    """The JSON state every entity of a rig reads (value_json.<key>)."""
    out = {'hashrate_ths': row.get('ths'), 'power_w': row.get('w'), 'j_per_th': row.get('jth'),
           'temp_max_c': row.get('hot_c'), 'fan_pct': row.get('fan_pct'),
           'alarm_count': len(row.get('alarms') or ()), 'alarms': list(row.get('alarms') or ()),
           'safety': row.get('safety'), 'tuner': row.get('tuner'),
           'power_target_w': controls.get('power_target_w'), 'fan_mode': controls.get('fan_mode', 'auto')}
    for b in (tel or {}).get('boards') or ():
        out['board_%s_temp_max_c' % b.get('index')] = b.get('temp_max_c')
    if row.get('pool') is not None:
        out['pool'] = row['pool']
    for k in ('hashrate_ths', 'power_w', 'j_per_th', 'temp_max_c'):
        if isinstance(out[k], float):
            out[k] = round(out[k], 2)
    return out


def parse_set(what, text, model):
    """HA control payload -> (op, args) or raises ValueError with the reason (nothing is sent)."""
    text = text.strip()
    if what == 'power_target':
        w = float(text)
        lo, hi, _ = power_range_w(model)
        if lo is None or not lo <= w <= hi:
            raise ValueError('power target %s W outside %s..%s W' % (text, lo, hi))
        return 'set_power_target', {'w': w}
    if what == 'fan_mode':
        if text == 'auto':
            return 'set_fan', {'mode': 'auto'}
        raise ValueError("fan mode 'manual' is set through the fan duty number")
    if what == 'fan_duty':
        duty = float(text)
        if not 0 <= duty <= 100:
            raise ValueError('fan duty %s outside 0..100 %%' % text)
        return 'set_fan', {'mode': 'manual', 'duty_pct': duty}
    if what == 'identify':
        return 'identify', {'duration_s': 60}
    raise ValueError('unknown control %r' % what)


class Bridge:
    """Wires a FleetState + FleetClient to Home Assistant (listener on the state, set/ handler)."""

    def __init__(self, state, client, prefix=PREFIX):
        self.state = state
        self.client = client
        self.prefix = prefix
        self.lock = threading.Lock()
        self.announced = {}     # rig key -> (model, firmware, boards) last announced
        self.controls = {}      # rig key -> {'power_target_w', 'fan_mode'}
        self.refused = []       # (rig key, reason) of controls refused here
        state.listeners.append(self.on_message)
        client.extra_subscriptions.append((BASE + '+/+/set/+', self.on_set))

    def on_message(self, kind, site, rig, msg):
        key = site + '/' + rig
        if kind == 'status':
            self.client.publish(BASE + key + '/availability', 'online' if msg.get('online') else 'offline',
                                retain=True)
        if kind in ('status', 'meta', 'telemetry'):
            self._announce(key, site, rig)
        if kind in ('telemetry', 'alarm'):
            self._publish_state(key)

    def _announce(self, key, site, rig):
        r = self.state.rig(key)
        if r is None:
            return
        meta = r.meta or {}
        boards = meta.get('boards') or len((r.tel or {}).get('boards') or ())
        ident = (r.model, meta.get('firmware'), boards)
        with self.lock:
            if self.announced.get(key) == ident:
                return
            self.announced[key] = ident
        for topic, cfg in discovery_configs(site, rig, r.model, meta.get('firmware'), boards, self.prefix):
            self.client.publish(topic, json.dumps(cfg, ensure_ascii=False), retain=True)

    def _publish_state(self, key):
        row = self.state.row(key)       # one rig, not the fleet: this runs per message
        r = self.state.rig(key)
        if row is None or r is None:
            return
        with self.lock:
            controls = dict(self.controls.get(key) or {})
        body = state_payload(row, r.tel, controls)
        self.client.publish(BASE + key + '/state', json.dumps(body), retain=True)

    def on_set(self, topic, payload):
        parts = topic[len(BASE):].split('/')
        if len(parts) != 4 or topics.check_name('site', parts[0]) or topics.check_name('rig', parts[1]):
            return
        site, rig, what = parts[0], parts[1], parts[3]
        key = site + '/' + rig
        r = self.state.rig(key)
        try:
            if r is None:
                raise ValueError('unknown rig')
            op, args = parse_set(what, bytes(payload).decode('utf-8', 'replace'), r.model)
            self.client.send(site, rig, op, args)
        except ValueError as e:
            with self.lock:
                self.refused.append((key, str(e)))
            return
        with self.lock:
            c = self.controls.setdefault(key, {})
            if op == 'set_power_target':
                c['power_target_w'] = args['w']
            elif op == 'set_fan':
                c['fan_mode'] = args['mode']
        self._publish_state(key)


def main(argv=None):
    p = argparse.ArgumentParser(prog='hashpilot fleet homeassistant', description=__doc__.split('\n')[0])
    p.add_argument('--broker', default='127.0.0.1:1883', help='MQTT broker HOST:PORT (the one HA uses)')
    p.add_argument('--site', default=None, help='only this site')
    p.add_argument('--discovery-prefix', default=PREFIX)
    p.add_argument('--username', default=None)
    p.add_argument('--password', default=None)
    args = p.parse_args(argv)
    from fleet import state as fstate
    from fleet.client import FleetClient
    st = fstate.FleetState(site=args.site)
    client = FleetClient(st, args.broker, site=args.site, username=args.username, password=args.password)
    Bridge(st, client, args.discovery_prefix)
    try:
        client.start()
    except (ConnectionError, ValueError) as e:
        print('hashpilot fleet homeassistant: %s' % e, file=sys.stderr)
        return 1
    print('hashpilot fleet homeassistant: bridging %s to discovery prefix %s (Ctrl-C stops)'
          % (args.broker, args.discovery_prefix), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        client.stop()
    return 0
