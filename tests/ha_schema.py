"""Home Assistant MQTT discovery, as documented (integrations/mqtt and the sensor, binary_sensor,
number, select and button MQTT pages of home-assistant.io; topic pattern from
homeassistant/components/mqtt/discovery.py TOPIC_MATCHER; number min < max and step >= 0.001 from
homeassistant/components/mqtt/number.py). `check(topic, payload_bytes)` returns a list of problems.
Facts only; no Home Assistant code (docs/fleet.md lists the sources).
"""

import json
import re

TOPIC = re.compile(r'^(?P<prefix>[^/#+]+)/(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?'
                   r'(?P<object_id>[a-zA-Z0-9_-]+)/config$')

COMMON = {'availability', 'availability_mode', 'availability_template', 'availability_topic', 'device',
          'enabled_by_default', 'encoding', 'entity_category', 'entity_picture', 'icon',
          'json_attributes_template', 'json_attributes_topic', 'name', 'origin', 'payload_available',
          'payload_not_available', 'qos', 'unique_id', 'default_entity_id', 'platform'}
DEVICE = {'configuration_url', 'connections', 'hw_version', 'identifiers', 'manufacturer', 'model',
          'model_id', 'name', 'serial_number', 'suggested_area', 'sw_version', 'via_device'}
ORIGIN = {'name', 'sw_version', 'support_url'}
ENTITY_CATEGORIES = ('config', 'diagnostic')
STATE_CLASSES = ('measurement', 'measurement_angle', 'total', 'total_increasing')
SENSOR_UNITS = {'power': {'mW', 'W', 'kW', 'MW', 'GW', 'TW', 'BTU/h'}, 'temperature': {'°C', '°F', 'K'}}

PLATFORMS = {
    # component: (required, optional)
    'sensor': ({'state_topic'}, {'device_class', 'expire_after', 'force_update', 'last_reset_value_template',
                                 'options', 'state_class', 'suggested_display_precision',
                                 'unit_of_measurement', 'value_template'}),
    'binary_sensor': ({'state_topic'}, {'device_class', 'expire_after', 'force_update', 'off_delay',
                                        'payload_off', 'payload_on', 'value_template'}),
    'number': ({'command_topic'}, {'command_template', 'device_class', 'max', 'min', 'mode', 'optimistic',
                                   'payload_reset', 'retain', 'state_topic', 'step', 'unit_of_measurement',
                                   'value_template'}),
    'select': ({'command_topic', 'options'}, {'command_template', 'optimistic', 'retain', 'state_topic',
                                              'value_template'}),
    'button': ({'command_topic'}, {'command_template', 'device_class', 'payload_press', 'retain'}),
}
BINARY_SENSOR_CLASSES = {'problem', 'connectivity', 'running', 'power', 'heat', 'safety'}
BUTTON_CLASSES = {'identify', 'restart', 'update'}
NUMBER_MODES = ('auto', 'box', 'slider')


def _topic_ok(t):
    return isinstance(t, str) and t and '#' not in t and '+' not in t


def check(topic, payload):
    errs = []
    m = TOPIC.match(topic)
    if not m:
        return ['topic %r does not match <prefix>/<component>/[<node_id>/]<object_id>/config' % topic]
    comp = m.group('component')
    if comp not in PLATFORMS:
        return ['component %r not checked here' % comp]
    try:
        cfg = json.loads(payload)
    except ValueError as e:
        return ['payload is not JSON: %s' % e]
    if not isinstance(cfg, dict):
        return ['payload is not a JSON object']
    required, optional = PLATFORMS[comp]
    for k in sorted(required - set(cfg)):
        errs.append('%s: required %s missing' % (comp, k))
    for k in sorted(set(cfg) - required - optional - COMMON):
        errs.append('%s: unknown option %s' % (comp, k))
    for k in cfg:
        if k.endswith('_topic') and not _topic_ok(cfg[k]):
            errs.append('%s must be a topic without wildcards' % k)
    if 'availability' in cfg:
        if 'availability_topic' in cfg:
            errs.append('availability and availability_topic are exclusive')
        if not isinstance(cfg['availability'], list) or not all(
                isinstance(a, dict) and _topic_ok(a.get('topic')) for a in cfg['availability']):
            errs.append('availability must be a list of {topic: ...}')
    dev = cfg.get('device')
    if dev is not None:
        if not isinstance(dev, dict) or set(dev) - DEVICE:
            errs.append('device has unknown keys %s' % sorted(set(dev) - DEVICE))
        elif not (dev.get('identifiers') or dev.get('connections')):
            errs.append('device needs identifiers or connections')
        if 'unique_id' not in cfg:
            errs.append('device info only works with unique_id')
    if 'origin' in cfg and (not isinstance(cfg['origin'], dict) or 'name' not in cfg['origin']
                            or set(cfg['origin']) - ORIGIN):
        errs.append('origin needs name and only %s' % sorted(ORIGIN))
    if cfg.get('entity_category') not in (None,) + ENTITY_CATEGORIES:
        errs.append('entity_category %r' % cfg.get('entity_category'))
    if cfg.get('qos') not in (None, 0, 1, 2):
        errs.append('qos %r' % cfg.get('qos'))
    errs += _platform(comp, cfg)
    return errs


def _platform(comp, cfg):
    errs = []
    if comp == 'sensor':
        if cfg.get('state_class') not in (None,) + STATE_CLASSES:
            errs.append('state_class %r' % cfg['state_class'])
        dc = cfg.get('device_class')
        if dc is not None and cfg.get('unit_of_measurement') not in SENSOR_UNITS.get(dc, ()):
            errs.append('unit %r not valid for device_class %r' % (cfg.get('unit_of_measurement'), dc))
    elif comp == 'binary_sensor':
        if cfg.get('device_class') is not None and cfg['device_class'] not in BINARY_SENSOR_CLASSES:
            errs.append('binary_sensor device_class %r' % cfg['device_class'])
    elif comp == 'number':
        lo, hi = cfg.get('min', 1.0), cfg.get('max', 100.0)
        if not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)) or lo >= hi:
            errs.append("'max' must be > 'min'")
        if cfg.get('step', 1.0) < 0.001:
            errs.append('step below 0.001')
        if cfg.get('mode', 'auto') not in NUMBER_MODES:
            errs.append('mode %r' % cfg.get('mode'))
    elif comp == 'select':
        opts = cfg.get('options')
        if not isinstance(opts, list) or not opts or not all(isinstance(o, str) for o in opts):
            errs.append('options must be a non-empty list of strings')
    elif comp == 'button':
        if cfg.get('device_class') not in (None,) and cfg['device_class'] not in BUTTON_CLASSES:
            errs.append('button device_class %r' % cfg['device_class'])
    return errs
