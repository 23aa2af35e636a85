"""Read commands of the RPC: the agent's state in cgminer/bmminer field names.

Every function takes the state snapshot the control thread built (see agent/api/state.py) and
returns reply sections [(NAME, [records])] after the STATUS one. Field names and shapes follow
bmminer on Antminer S17/S19/S21 and cgminer (sources in docs/cgminer-api.md). Plain functions
over dicts, no I/O.
"""

from agent.api import wire
from hal import hashsum

RATE_UNIT = 'GH'


def _r2(v):
    return round(float(v or 0.0), 2)


def _ints(vals):
    return [int(round(v)) if v is not None else 0 for v in vals]


def _board_chips_ok(board):
    return [c for c in board['chips'] if c['state'] == hashsum.OK]


def board_fields(board, model):
    """Per-chain figures shared by stats, devs and temps."""
    chips = board['chips']
    ok = _board_chips_ok(board)
    freqs = [c['freq_mhz'] for c in chips if c['freq_mhz']]
    dies = [c['temp_c'] for c in chips if c['temp_c'] is not None]
    # the 4 chip readings bmminer reports per chain: here the hottest die of each quarter
    quarter = max(1, (len(chips) + 3) // 4)
    chip4 = []
    for q in range(0, len(chips), quarter):
        seg = [c['temp_c'] for c in chips[q:q + quarter] if c['temp_c'] is not None]
        chip4.append(max(seg) if seg else 0)
    ideal_ghs = sum((c['freq_mhz'] or 0.0) * model['cores_per_chip'] / 1000.0 for c in ok)
    errs = [c['err_pct'] for c in ok if c['err_pct'] is not None]
    return {
        'asic_num': len(ok),
        # bmminer's chain status string: 'o' per answering chip, 'x' per missing one, 8 a group
        'acs': ''.join((' ' if i % 8 == 0 else '') + ('o' if c['state'] == hashsum.OK else 'x')
                       for i, c in enumerate(chips)),
        'rate_ghs': board['hashrate_ghs'] or 0.0,
        'ideal_ghs': ideal_ghs,
        'freq_avg_mhz': (sum(freqs) / len(freqs)) if freqs else 0.0,
        'pcb_c': _ints(board['temps_c'] or []),
        'chip_c': _ints(chip4),
        'die_max_c': max(dies) if dies else 0.0,
        'hw_pct': (sum(errs) / len(errs)) if errs else 0.0,
        'enabled': bool(board['enabled']),
    }


def version(state, param, extra):
    ident = state['identity']
    return [('VERSION', [{'BMMiner': ident['bmminer'], 'API': ident['api'], 'Miner': ident['miner'],
                          'CompileTime': ident['compile_time'], 'Type': ident['type']}])]


def summary(state, param, extra):
    st = state['status']
    acc, rej, stale, diff_acc, diff_rej = _share_totals(state)
    ghs = st['hashrate_ghs'] or 0.0
    rec = {'Elapsed': int(state['elapsed_s']),
           # bmminer sends 'GHS 5s' as a string and 'GHS av' as a number (captured replies)
           'GHS 5s': '%.2f' % ghs, 'GHS av': _r2(state['ghs_av']), 'GHS 30m': _r2(state['ghs_30m']),
           'Found Blocks': 0, 'Getworks': 0, 'Accepted': acc, 'Rejected': rej,
           'Hardware Errors': 0, 'Utility': 0.0, 'Discarded': 0, 'Stale': stale,
           'Get Failures': _pool_sum(state, 'get_failures'), 'Local Work': 0,
           'Remote Failures': _pool_sum(state, 'remote_failures'), 'Network Blocks': 0,
           'Total MH': round(state['ghs_av'] * 1000.0 * state['elapsed_s'], 0),
           'Work Utility': 0.0, 'Difficulty Accepted': diff_acc, 'Difficulty Rejected': diff_rej,
           'Difficulty Stale': 0.0, 'Best Share': _pool_max(state, 'best_share'),
           'Device Hardware%': round(_hw_pct(state), 4),
           'Device Rejected%': round(100.0 * diff_rej / (diff_acc + diff_rej), 4) if diff_acc + diff_rej else 0.0,
           'Pool Rejected%': round(100.0 * diff_rej / (diff_acc + diff_rej), 4) if diff_acc + diff_rej else 0.0,
           'Pool Stale%': 0.0, 'Last getwork': int(state['when_s'])}
    if st.get('power_w') is not None:
        rec['Power'] = int(round(st['power_w']))   # not bmminer's: a hashpilot extra
    return [('SUMMARY', [rec])]


def _hw_pct(state):
    errs = [c['err_pct'] for b in state['status']['boards'] for c in _board_chips_ok(b)
            if c['err_pct'] is not None]
    return sum(errs) / len(errs) if errs else 0.0


def _pools(state):
    return state.get('pools') or []


def _pool_sum(state, key):
    return sum(int(p.get(key) or 0) for p in _pools(state))


def _pool_max(state, key):
    return max([int(p.get(key) or 0) for p in _pools(state)] or [0])


def _share_totals(state):
    pools = _pools(state)
    return (sum(int(p.get('accepted') or 0) for p in pools),
            sum(int(p.get('rejected') or 0) for p in pools),
            sum(int(p.get('stale') or 0) for p in pools),
            float(sum(p.get('diff_accepted') or 0 for p in pools)),
            float(sum(p.get('diff_rejected') or 0 for p in pools)))


def _fans(state):
    return [int(f.get('rpm') or 0) for f in state['status']['fans']]


def stats(state, param, extra):
    """bmminer `stats`: STATS[0] identity, STATS[1] the flat per-chain fields. With the request
    key new_api = true (Antminer S19/S21 firmware) the nested form instead, see stats_new_api."""
    if extra.get('new_api'):
        return stats_new_api(state)
    ident, st, model = state['identity'], state['status'], state['model']
    boards = [board_fields(b, model) for b in st['boards']]
    fans = _fans(state)
    ghs = st['hashrate_ghs'] or 0.0
    rec = {'STATS': 0, 'ID': 'BTM_SOC0', 'Elapsed': int(state['elapsed_s']), 'Calls': 0,
           'Wait': 0.0, 'Max': 0.0, 'Min': 99999999.0,
           'GHS 5s': '%.2f' % ghs, 'GHS av': _r2(state['ghs_av']), 'GHS 30m': _r2(state['ghs_30m']),
           'Mode': 1, 'miner_count': len(boards), 'frequency': '%.0f' % _mean([b['freq_avg_mhz'] for b in boards]),
           'fan_num': len(fans)}
    for i, rpm in enumerate(fans, 1):
        rec['fan%d' % i] = rpm
    rec['temp_num'] = len(boards)
    for i, b in enumerate(boards, 1):
        rec['temp%d' % i] = max(b['pcb_c'] or [0])          # board (PCB) temperature
    for i, b in enumerate(boards, 1):
        rec['temp2_%d' % i] = int(round(b['die_max_c']))     # hottest chip
    for i, b in enumerate(boards, 1):
        rec['temp3_%d' % i] = int(round(b['die_max_c']))
    for i, b in enumerate(boards, 1):
        rec['temp_pcb%d' % i] = '-'.join(str(t) for t in b['pcb_c'])
        rec['temp_chip%d' % i] = '-'.join(str(t) for t in b['chip_c'])
    rec['total_rateideal'] = _r2(sum(b['ideal_ghs'] for b in boards))
    rec['rate_unit'] = RATE_UNIT
    rec['total_freqavg'] = _r2(_mean([b['freq_avg_mhz'] for b in boards]))
    rec['total_acn'] = sum(b['asic_num'] for b in boards)
    rec['total_rate'] = _r2(ghs)
    for i, b in enumerate(boards, 1):
        rec['chain_rateideal%d' % i] = _r2(b['ideal_ghs'])
    rec['temp_max'] = max([max(b['pcb_c'] or [0]) for b in boards] or [0])
    rec['Device Hardware%'] = round(_hw_pct(state), 4)
    rec['no_matching_work'] = 0
    for i, b in enumerate(boards, 1):
        rec['chain_acn%d' % i] = b['asic_num']
    for i, b in enumerate(boards, 1):
        rec['chain_acs%d' % i] = b['acs']
    for i, b in enumerate(boards, 1):
        rec['chain_hw%d' % i] = 0
    for i, b in enumerate(boards, 1):
        rec['chain_rate%d' % i] = '%.2f' % b['rate_ghs']   # a string in bmminer
    for i, b in enumerate(boards, 1):
        rec['freq%d' % i] = int(round(b['freq_avg_mhz']))
    rec['miner_version'] = ident['miner']
    rec['miner_id'] = ident['miner_id']
    if st.get('power_w') is not None:
        rec['chain_power'] = '%d W' % int(round(st['power_w']))   # Hiveon's field, a hashpilot extra
    head = {'BMMiner': ident['bmminer'], 'Miner': ident['miner'],
            'CompileTime': ident['compile_time'], 'Type': ident['type']}
    return [('STATS', [head, rec])]


def _mean(vals):
    vals = [v for v in vals if v]
    return sum(vals) / len(vals) if vals else 0.0


def stats_new_api(state):
    """The nested `stats` of Antminer S19/S21 firmware (request key new_api = true)."""
    ident, st, model = state['identity'], state['status'], state['model']
    chains = []
    for i, b in enumerate(st['boards']):
        f = board_fields(b, model)
        sn = state['board_ids'][i] if i < len(state['board_ids']) else ''
        chains.append({'index': i, 'freq_avg': int(round(f['freq_avg_mhz'])),
                       'rate_ideal': _r2(f['ideal_ghs']), 'rate_real': _r2(f['rate_ghs']),
                       'asic_num': f['asic_num'], 'asic': f['acs'].strip(),
                       'temp_pic': list(f['pcb_c']), 'temp_pcb': list(f['pcb_c']),
                       'temp_chip': list(f['chip_c']), 'hw': 0, 'eeprom_loaded': True,
                       'sn': sn, 'hwp': round(f['hw_pct'], 4)})
    fans = _fans(state)
    rec = {'elapsed': int(state['elapsed_s']), 'rate_5s': _r2(st['hashrate_ghs']),
           'rate_30m': _r2(state['ghs_30m']), 'rate_avg': _r2(state['ghs_av']),
           'rate_ideal': _r2(sum(c['rate_ideal'] for c in chains)), 'rate_unit': 'GH/s',
           'chain_num': len(chains), 'fan_num': len(fans), 'fan': fans,
           'hwp_total': round(_hw_pct(state), 4), 'miner-mode': 0, 'freq-level': 100,
           'chain': chains}
    return [('INFO', {'miner_version': ident['miner'], 'CompileTime': ident['compile_time'],
                      'type': ident['type']}),
            ('STATS', [rec])]


def devs(state, param, extra):
    model = state['model']
    out = []
    for i, b in enumerate(state['status']['boards']):
        f = board_fields(b, model)
        mhs = f['rate_ghs'] * 1000.0
        out.append({'ASC': i, 'Name': 'BTM_SOC', 'ID': i, 'Enabled': 'Y' if f['enabled'] else 'N',
                    'Status': 'Alive' if f['asic_num'] else 'Dead',
                    'Temperature': round(f['die_max_c'], 2),
                    'MHS av': round(mhs, 2), 'MHS 5s': round(mhs, 2), 'MHS 1m': round(mhs, 2),
                    'MHS 5m': round(mhs, 2), 'MHS 15m': round(mhs, 2),
                    'Accepted': 0, 'Rejected': 0, 'Hardware Errors': 0, 'Utility': 0.0,
                    'Last Share Pool': -1, 'Last Share Time': 0, 'Total MH': 0.0,
                    'Diff1 Work': 0, 'Difficulty Accepted': 0.0, 'Difficulty Rejected': 0.0,
                    'Last Share Difficulty': 0.0, 'Last Valid Work': int(state['when_s']),
                    'Device Hardware%': round(f['hw_pct'], 4), 'Device Rejected%': 0.0,
                    'Device Elapsed': int(state['elapsed_s']), 'Chips': f['asic_num'],
                    'Frequency': round(f['freq_avg_mhz'], 2)})
    return [('DEVS', out)]


def devdetails(state, param, extra):
    out = []
    for i, b in enumerate(state['status']['boards']):
        url = state['chain_urls'][i] if i < len(state['chain_urls']) else ''
        out.append({'DEVDETAILS': i, 'Name': 'BTM_SOC', 'ID': i, 'Driver': 'hashpilot',
                    'Kernel': '', 'Model': state['identity']['type'], 'Device Path': url,
                    'Chips': len(_board_chips_ok(b))})
    return [('DEVDETAILS', out)]


def pools(state, param, extra):
    out = []
    for i, p in enumerate(_pools(state)):
        out.append({'POOL': i, 'URL': p.get('url', ''),
                    'Status': 'Alive' if p.get('alive') else 'Dead',
                    'Priority': int(p.get('priority', i)), 'Quota': 1, 'Long Poll': 'N',
                    'Getworks': int(p.get('getworks') or 0), 'Accepted': int(p.get('accepted') or 0),
                    'Rejected': int(p.get('rejected') or 0), 'Discarded': 0,
                    'Stale': int(p.get('stale') or 0),
                    'Get Failures': int(p.get('get_failures') or 0),
                    'Remote Failures': int(p.get('remote_failures') or 0),
                    'User': p.get('user', ''), 'Last Share Time': int(p.get('last_share_s') or 0),
                    'Diff1 Shares': 0, 'Proxy Type': '', 'Proxy': '',
                    'Difficulty Accepted': float(p.get('diff_accepted') or 0),
                    'Difficulty Rejected': float(p.get('diff_rejected') or 0),
                    'Difficulty Stale': 0.0,
                    'Last Share Difficulty': float(p.get('difficulty') or 0),
                    'Has Stratum': True, 'Stratum Active': bool(p.get('active')),
                    'Stratum URL': p.get('host', ''), 'Has GBT': False,
                    'Best Share': int(p.get('best_share') or 0),
                    'Pool Rejected%': 0.0, 'Pool Stale%': 0.0})
    return [('POOLS', out)]


def config(state, param, extra):
    c = state['config']
    return [('CONFIG', [{'ASC Count': len(state['status']['boards']), 'PGA Count': 0,
                         'Pool Count': len(_pools(state)), 'Strategy': 'Failover',
                         'Log Interval': int(c.get('telemetry_s', 10)), 'Device Code': 'BTM_SOC',
                         'OS': 'Linux', 'Hotplug': 'None',
                         'Power Target W': c.get('power_target_w') or 0,
                         'Writes': 'Y' if c.get('writes') else 'N'}])]


def coin(state, param, extra):
    pool = next((p for p in _pools(state) if p.get('active')), {})
    return [('COIN', [{'Hash Method': 'sha256',
                       'Current Block Time': float(pool.get('block_time_s') or 0),
                       'Current Block Hash': pool.get('prev_hash', ''),
                       'LP': False,
                       'Network Difficulty': float(pool.get('network_difficulty') or 0)}])]


def fans(state, param, extra):
    """Braiins/LuxOS-style `fans`: one record per fan with RPM and duty."""
    out = []
    for i, f in enumerate(state['status']['fans']):
        out.append({'FAN': i, 'ID': i, 'RPM': int(f.get('rpm') or 0),
                    'Speed': int(round(f.get('duty_pct') or 0))})
    return [('FANS', out)]


def temps(state, param, extra):
    """Braiins-style `temps`: per board the hottest board sensor and the hottest die."""
    model = state['model']
    out = []
    for i, b in enumerate(state['status']['boards']):
        f = board_fields(b, model)
        out.append({'TEMP': i, 'ID': i, 'Board': float(max(f['pcb_c'] or [0])),
                    'Chip': round(f['die_max_c'], 2)})
    return [('TEMPS', out)]


def power(state, param, extra):
    """LuxOS-style `power`: the rig's input power."""
    w = state['status'].get('power_w')
    return [('POWER', [{'Watts': int(round(w)) if w is not None else 0, 'PSU': w is not None}])]


# name -> (function, status key, count-in-message). Read commands only; writes are in handler.py.
READ = {
    'version': (version, 'version'),
    'summary': (summary, 'summary'),
    'stats': (stats, 'minestats'),
    'devs': (devs, 'devs'),
    'devdetails': (devdetails, 'devdetails'),
    'pools': (pools, 'pool'),
    'config': (config, 'mineconfig'),
    'coin': (coin, 'minecoin'),
    'fans': (fans, 'fans'),
    'temps': (temps, 'temps'),
    'power': (power, 'power'),
}


def read_reply(name, state, param, extra):
    """Sections of a read command, STATUS first."""
    fn, key = READ[name]
    when, desc = state['when_s'], state['identity']['description']
    if name == 'pools' and not _pools(state):
        return [('STATUS', [wire.status('nopool', when, desc)])]
    body = fn(state, param, extra)
    if name == 'stats' and extra.get('new_api'):
        # the new API's STATUS is one object with lower-case keys (pyasic accepts the form)
        return [('STATUS', {'STATUS': 'S', 'when': int(when), 'Msg': 'stats',
                            'api_version': '1.0.0'})] + body
    if key == 'pool':
        st = wire.status(key, when, desc, len(_pools(state)))
    elif key == 'devs':
        st = wire.status(key, when, desc, len(state['status']['boards']))
    else:
        st = wire.status(key, when, desc)
    return [('STATUS', [st])] + body
