"""Field definitions of every hashpilot MQTT payload: the single source of truth for the builders,
the consumer decoder, the retained `meta` message and the generated reference doc. Pure data.

A field is a tuple (wire_key, name, type, unit, decimals, required, description):
  wire_key  key on the wire (short to keep CBOR small)
  name      key in the builders' input dicts and in decoded output
  type      'uint' 'int' 'str' 'bool' 'any' 'num' (scaled number) 'list:num' 'list:int' 'list:str'
            'list:pair' ([index, state code] pairs) 'map:<table>' 'list:map:<table>'
  decimals  for 'num' types: wire = round(value * 10**decimals) as an integer, value = wire / 10**d
  required  1 = always present, 0 = optional (absent when unknown)
"""

SCHEMA_VERSION = 1

ENVELOPE = (
    ('v', 'v', 'uint', '', None, 1, 'schema major version; always 1 in v1'),
    ('seq', 'seq', 'uint', '', None, 1,
     'sequence number per topic, starting at 1 for each boot_id; gaps mean lost messages'),
    ('ts', 'ts_ms', 'uint', 'ms', None, 1, 'Unix time when the payload was built, milliseconds'),
    ('boot_id', 'boot_id', 'str', '', None, 1,
     'random id chosen at each agent start; seq restarts at 1 with a new boot_id'),
    ('h', 'historical', 'bool', '', None, 0,
     'true on backlog replayed from the outbox after an outage (absent on live messages)'),
)

STATUS = (
    ('v', 'v', 'uint', '', None, 1, 'schema major version'),
    ('seq', 'seq', 'uint', '', None, 1, 'equal to session_seq'),
    ('ts', 'ts_ms', 'uint', 'ms', None, 1,
     'Unix time in ms (for the Will: when the connection was set up)'),
    ('online', 'online', 'bool', '', None, 1, 'true in the birth message, false in the Will'),
    ('boot_id', 'boot_id', 'str', '', None, 1, 'agent process id for this boot'),
    ('session_seq', 'session_seq', 'uint', '', None, 1,
     'broker session number within boot_id, 1 for the first connection'),
    ('firmware', 'firmware', 'str', '', None, 0, 'agent/firmware version (birth only)'),
    ('model', 'model', 'str', '', None, 0, 'rig model name (birth only)'),
)

META = ENVELOPE[:4] + (
    ('model', 'model', 'str', '', None, 1, 'rig model (hal/models.py)'),
    ('chip', 'chip', 'str', '', None, 1, 'ASIC chip family, e.g. BM1368'),
    ('boards', 'boards', 'uint', '', None, 1, 'number of hashboards'),
    ('chips_per_board', 'chips_per_board', 'uint', '', None, 1, 'chips on each hashboard'),
    ('domains_per_board', 'domains_per_board', 'uint', '', None, 1, 'voltage domains per board'),
    ('fans', 'fans', 'uint', '', None, 1, 'number of fans'),
    ('voltage_per', 'voltage_per', 'str', '', None, 1, "'rig' (shared rail) or 'board'"),
    ('f_nom_mhz', 'f_nom_mhz', 'num', 'MHz', 1, 1, 'nominal chip frequency'),
    ('freq_max_mhz', 'freq_max_mhz', 'num', 'MHz', 1, 1, 'frequency ceiling'),
    ('temp_hot_c', 'temp_hot_c', 'num', 'degC', 1, 1, 'throttle temperature'),
    ('temp_danger_c', 'temp_danger_c', 'num', 'degC', 1, 1, 'shutdown temperature'),
    ('board_ids', 'board_ids', 'list:str', '', None, 0, 'hashboard serials, by board index'),
    ('firmware', 'firmware', 'str', '', None, 0, 'agent/firmware version'),
    ('telemetry_s', 'telemetry_s', 'uint', 's', None, 1, 'telemetry period'),
    ('chips_s', 'chips_s', 'uint', 's', None, 1, 'chips snapshot period'),
    ('format', 'format', 'str', '', None, 1, "payload encoding: 'cbor' or 'json'"),
    ('chip_states', 'chip_states', 'list:str', '', None, 1,
     'chip state names indexed by the codes used in chips.bd[].x'),
    ('fields', 'fields', 'any', '', None, 1,
     'per topic: wire key -> [name, unit, scale]; scale multiplies the wire integer'),
    ('pools', 'pools', 'list:str', '', None, 0,
     'Stratum pool URLs in priority order (worker names and passwords are not published)'),
)

CTRL = (
    ('cpu', 'cpu_pct', 'num', '%', 0, 0, 'control board CPU use'),
    ('mem', 'mem_pct', 'num', '%', 0, 0, 'memory use'),
    ('ld', 'load1', 'num', '', 2, 0, '1-minute load average'),
    ('tc', 'temp_c', 'num', 'degC', 1, 0, 'SoC temperature'),
    ('dsk', 'disk_pct', 'num', '%', 0, 0, 'state partition use'),
    ('rss', 'agent_rss_mb', 'num', 'MB', 1, 0, 'agent resident memory'),
    ('acpu', 'agent_cpu_pct', 'num', '%', 1, 0, 'agent CPU use (% of one core)'),
)

TUNER = (
    ('st', 'state', 'str', '', None, 1, "tuner state, e.g. 'idle', 'tuning', 'done', 'paused'"),
    ('pr', 'progress_pct', 'num', '%', 0, 0, 'progress of the current tuning run'),
    ('tgt', 'target', 'str', '', None, 0, "mode, goal and unit, e.g. 'power 3500.0 W', "
     "'hashrate 180.0 TH/s', 'thermal 72.0 C' (die ceiling)"),
    ('eta', 'eta_s', 'num', 's', 0, 0, 'estimated time to the end of the tuning run'),
    ('bj', 'best_j_per_th', 'num', 'J/TH', 2, 0, 'best efficiency found so far'),
    ('bp', 'best_power_w', 'num', 'W', 0, 0, 'wall power at the best point'),
    ('hb', 'heat_budget_w', 'num', 'W', 0, 0, 'heat mode: the cap on heat into the room'),
    ('ht', 'heat_w', 'num', 'W', 0, 0,
     'heat mode: heat into the room now (wall power x the profile\'s heat_share)'),
)

POOL = (
    ('i', 'index', 'uint', '', None, 1, 'pool index (priority order, 0 first)'),
    ('u', 'url', 'str', '', None, 1, 'pool URL'),
    ('st', 'state', 'str', '', None, 1, "'up', 'connecting', 'down' or 'idle'"),
    ('c', 'connected', 'bool', '', None, 1, 'mining on this pool now'),
    ('d', 'difficulty', 'num', '', 6, 0, 'share difficulty the pool set'),
    ('a', 'accepted', 'uint', '', None, 1, 'shares accepted'),
    ('r', 'rejected', 'uint', '', None, 1, 'shares rejected (not stale or duplicate)'),
    ('s', 'stale', 'uint', '', None, 1, 'shares stale (job gone or pool changed)'),
    ('dup', 'duplicate', 'uint', '', None, 0, 'shares the pool called duplicates'),
    ('age', 'last_share_age_s', 'num', 's', 0, 0, 'time since the last accepted share'),
)

TBOARD = (
    ('i', 'index', 'uint', '', None, 1, 'board index (0-based)'),
    ('hr', 'hashrate_ghs', 'num', 'GH/s', 0, 0, 'board hashrate (sum of chips)'),
    ('tmx', 'temp_max_c', 'num', 'degC', 1, 0, 'hottest chip'),
    ('tb', 'temps_c', 'list:num', 'degC', 1, 0, 'board sensors (null = failed sensor)'),
    ('f', 'freq_avg_mhz', 'num', 'MHz', 1, 0, 'mean chip frequency'),
    ('mv', 'voltage_mv', 'num', 'mV', 0, 0, 'board voltage readback'),
    ('n', 'chips_ok', 'uint', '', None, 0, 'chips answering and hashing'),
    ('e', 'err_pct', 'num', '%', 2, 0, 'mean chip hardware error rate'),
    ('ss', 'safety', 'str', '', None, 0, "safety state: 'ok', 'hot', 'throttled', 'off', 'fault'"),
    ('en', 'enabled', 'bool', '', None, 0, 'board powered and hashing'),
    ('cap', 'freq_cap_pct', 'num', '%', 0, 0, 'safety cap on requested frequencies (100 = none)'),
    ('sr', 'safety_reason', 'str', '', None, 0, 'why the board is not in normal state (absent when normal)'),
    ('dsc', 'scaling', 'str', '', None, 0,
     "'replan' while dynamic scaling re-plans this board's derate per chip (absent: flat cap)"),
)

TELEMETRY = ENVELOPE + (
    ('st', 'state', 'str', '', None, 0, "rig state, e.g. 'starting', 'running', 'protect', 'stopped'"),
    ('hr', 'hashrate_ghs', 'num', 'GH/s', 0, 1, 'rig hashrate'),
    ('p', 'power_w', 'num', 'W', 0, 0, 'wall power (measured or estimated)'),
    ('jth', 'j_per_th', 'num', 'J/TH', 2, 0, 'efficiency: wall power / hashrate'),
    ('why', 'reason', 'str', '', None, 0, 'why the rig is not in normal state (absent when normal)'),
    ('up', 'uptime_s', 'num', 's', 0, 0, 'agent uptime'),
    ('fd', 'fan_duty_pct', 'list:num', '%', 0, 0, 'fan duty per fan'),
    ('fr', 'fan_rpm', 'list:num', 'rpm', 0, 0, 'fan speed per fan'),
    ('ctl', 'ctrl', 'map:ctrl', '', None, 0, 'control board health'),
    ('tun', 'tuner', 'map:tuner', '', None, 0, 'autotuner state'),
    ('pl', 'pools', 'list:map:pool', '', None, 0, 'Stratum pools (work path on)'),
    ('lost', 'outbox_dropped', 'uint', '', None, 0,
     'messages the bounded outbox dropped (oldest first) since boot'),
    ('bd', 'boards', 'list:map:tboard', '', None, 1, 'per-board summary'),
    ('cool', 'cooling', 'str', '', None, 0, "'immersion' when the rig sits in coolant (absent: air)"),
    ('tcl', 'coolant_c', 'num', 'degC', 1, 0, 'immersion: coolant temperature (config or set_coolant)'),
    ('dyn', 'dynamic_scaling', 'bool', '', None, 0,
     'true when safety derates are re-planned per chip (absent: off)'),
)

CBOARD = (
    ('i', 'index', 'uint', '', None, 1, 'board index (0-based)'),
    ('t', 'temp_c', 'list:num', 'degC', 1, 1, 'chip temperature per chip (null = unknown)'),
    ('f', 'freq_mhz', 'list:num', 'MHz', 1, 1, 'chip frequency per chip'),
    ('hr', 'hashrate_ghs', 'list:num', 'GH/s', 0, 1, 'chip hashrate per chip'),
    ('e', 'err_pct', 'list:num', '%', 2, 1, 'chip hardware error rate per chip'),
    ('hn', 'nonce_hashrate_ghs', 'list:num', 'GH/s', 0, 0,
     'chip hashrate from verified nonces (2^(32+N) hashes each; work path on)'),
    ('hw', 'hw_err_pct', 'list:num', '%', 2, 0,
     "share of the chip's nonces that fail SHA-256d (work path on)"),
    ('x', 'abnormal', 'list:pair', '', None, 0,
     "[chip index, state code] for chips not 'ok' (codes: meta.chip_states)"),
)

CHIPS = ENVELOPE + (
    ('bd', 'boards', 'list:map:cboard', '', None, 1, 'per-board arrays, chip index order'),
)

ALARM = ENVELOPE + (
    ('id', 'id', 'str', '', None, 1, "alarm id, stable per condition, e.g. 'board_hot'"),
    ('ev', 'event', 'str', '', None, 1, "'raise' or 'clear'"),
    ('sev', 'severity', 'str', '', None, 1, "'info', 'warning' or 'critical'"),
    ('msg', 'message', 'str', '', None, 1, 'human readable text'),
    ('bd', 'board', 'uint', '', None, 0, 'board index when the alarm concerns one board'),
    ('val', 'value', 'any', '', None, 0, 'measured value that triggered it (plain number)'),
)

CMD_RESULT = ENVELOPE + (
    ('id', 'id', 'str', '', None, 1, 'id of the command this answers'),
    ('op', 'op', 'str', '', None, 0, 'command operation'),
    ('ok', 'ok', 'bool', '', None, 1, 'true when the command was executed'),
    ('err', 'error', 'str', '', None, 0, 'reason when ok is false'),
    ('r', 'result', 'any', '', None, 0, 'operation specific result'),
)

CMD = (
    ('id', 'id', 'str', '', None, 1, 'command id (1..64 chars), echoed in cmd/result'),
    ('args', 'args', 'any', '', None, 0, 'operation arguments (map)'),
    ('v', 'v', 'uint', '', None, 0, 'schema version, 1 if present'),
    ('ts', 'ts_ms', 'uint', 'ms', None, 0, 'sender time'),
)

TABLES = {'ctrl': CTRL, 'tuner': TUNER, 'tboard': TBOARD, 'cboard': CBOARD, 'pool': POOL}

# topic suffix -> (fields, qos, retained, direction, summary)
TOPICS = {
    'status': (STATUS, 1, True, 'out',
               'birth on every connect and Last Will; the current online state'),
    'meta': (META, 1, True, 'out', 'rig description, units and scale factors; sent on every connect'),
    'telemetry': (TELEMETRY, 1, False, 'out', 'rig and board summary, every telemetry_s (10 s)'),
    'chips': (CHIPS, 1, False, 'out', 'per-chip arrays per board, every chips_s (60 s)'),
    'alarm': (ALARM, 1, False, 'out', 'alarm raise/clear events'),
    'cmd/<op>': (CMD, 1, False, 'in', 'commands to the agent (op: [a-z0-9_]{1,32})'),
    'cmd/result': (CMD_RESULT, 1, False, 'out', 'answer to each command'),
}

TOPIC_ORDER = ('status', 'meta', 'telemetry', 'chips', 'alarm', 'cmd/<op>', 'cmd/result')

CHIP_STATES = ('ok', 'dead', 'hot', 'off', 'slow', 'unknown')


def fields_for(kind):
    """Field tuple for a topic suffix ('cmd/<anything but result>' maps to 'cmd/<op>')."""
    entry = TOPICS.get(kind)
    if entry is None and kind.startswith('cmd/'):
        entry = TOPICS['cmd/<op>']
    return entry[0] if entry else None


def scale_of(decimals):
    return None if decimals is None else 10.0 ** -decimals
