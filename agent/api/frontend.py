"""The RPC's side in the agent: state snapshots on the control thread, writes through the
agent's command path.

The control thread builds a fresh snapshot dict every poll period and swaps one reference; the
server thread only reads the newest one. So a reply never touches hardware and the control loop
never waits on a client. Write commands come back to the control thread through
`Scheduler.call_soon` and are validated and applied exactly like MQTT commands.
"""

import collections
import itertools
import logging
import os
import socket
import time

from agent import __version__
from agent.api.server import ApiServer

log = logging.getLogger('hashpilot.api')

# Rig model -> the Antminer type string bmminer reports (pyasic picks its backend from it).
# ' (hashpilot)' is dropped by pyasic (it cuts the type at ' (') and tells people what runs.
ANTMINER_TYPES = {'S21': 'Antminer S21', 'S19JPRO': 'Antminer S19j Pro'}
API_VERSION = '3.1'            # what bmminer on S17/S19 reports
AVERAGE_30M_S = 1800.0


def identity(model_name, rig_name):
    base = ANTMINER_TYPES.get(model_name, 'hashpilot %s' % model_name)
    return {'type': '%s (hashpilot)' % base, 'model': base, 'bmminer': __version__,
            'miner': 'hashpilot %s' % __version__, 'compile_time': 'hashpilot %s' % __version__,
            'api': API_VERSION, 'description': 'hashpilot %s' % __version__,
            'miner_id': rig_name}


class RateAverages:
    """Mean hashrate since start and over the last 30 minutes, from the snapshots."""

    def __init__(self, window_s=AVERAGE_30M_S, max_points=2048):
        self.window_s = window_s
        self.points = collections.deque(maxlen=max_points)
        self.sum_ghs_s = 0.0
        self.total_s = 0.0
        self.last = None

    def add(self, t_s, ghs):
        if self.last is not None:
            dt = t_s - self.last[0]
            if dt > 0:
                self.sum_ghs_s += self.last[1] * dt
                self.total_s += dt
        self.last = (t_s, ghs)
        # thinned to half the deque's length per window, so the window spans all 30 minutes
        # whatever the poll period (0.5 s polls would otherwise keep only the last 17 minutes)
        if not self.points or t_s - self.points[-1][0] >= self.window_s * 2.0 / self.points.maxlen:
            self.points.append((t_s, ghs))
        while self.points and self.points[0][0] < t_s - self.window_s:
            self.points.popleft()

    def average(self):
        if self.total_s <= 0:
            return self.last[1] if self.last else 0.0
        return self.sum_ghs_s / self.total_s

    def window(self):
        pts = list(self.points)
        return sum(p[1] for p in pts) / len(pts) if pts else 0.0


class ApiFrontEnd:
    def __init__(self, agent, cfg):
        self.agent = agent
        self.cfg = cfg
        self.ident = identity(agent.model['name'], agent.cfg['rig']['rig'])
        self.rates = RateAverages()
        self.board_ids = None
        self.ids = itertools.count(1)
        self.state = self._empty_state()
        self.server = ApiServer(cfg['listen'], self.get_state, self.submit,
                                allow=cfg['allow'], writes=cfg['writes'],
                                max_connections=cfg['max_connections'],
                                max_request_bytes=cfg['max_request_bytes'],
                                timeout_s=cfg['timeout_s'], web_listen=cfg.get('web_listen', ''),
                                host_info=host_info())

    # -- control thread -------------------------------------------------------------------------
    def start(self, now):
        self.snapshot(now)
        self.server.start()
        log.info('cgminer API listening on %s:%d (writes %s)%s', self.server.host, self.server.port,
                 'enabled' if self.cfg['writes'] else 'disabled',
                 ', web pages on port %d' % self.server.web_port if self.server.web_port else '')
        self.agent.scheduler.add_timer(self._timer, now + 1.0)

    def _timer(self, now):
        self.snapshot(now)
        return self.agent._period(now, min(2.0, self.agent.cfg['telemetry']['poll_s']))

    def _empty_state(self):
        return {'when_s': time.time(), 'elapsed_s': 0.0, 'identity': self.ident,
                'model': self.agent.model,
                'status': {'hashrate_ghs': 0.0, 'power_w': None, 'fans': [], 'boards': []},
                'board_ids': [], 'chain_urls': [], 'ghs_av': 0.0, 'ghs_30m': 0.0,
                'pools': [], 'alarms': [], 'config': self._config()}

    def _config(self):
        a = self.agent
        tuner = a.tuner.get_status() if a.tuner is not None else {}
        return {'telemetry_s': a.cfg['telemetry']['telemetry_s'], 'writes': self.cfg['writes'],
                'power_target_w': tuner.get('target') if tuner.get('mode') == 'power' else None}

    def snapshot(self, now):
        """Build the state every reply reads (control thread; no hardware I/O but board ids once)."""
        a = self.agent
        if self.board_ids is None:
            self.board_ids = []
            for i in range(a.model['boards']):
                try:
                    self.board_ids.append(a.rig.board.board_id(i))
                except Exception:
                    self.board_ids.append('')
        status = a.status()
        elapsed = time.monotonic() - a.started_wall
        self.rates.add(elapsed, status['hashrate_ghs'] or 0.0)
        self.state = {'when_s': time.time(), 'elapsed_s': elapsed, 'identity': self.ident,
                      'model': a.model, 'status': status, 'board_ids': list(self.board_ids),
                      'chain_urls': [getattr(getattr(c, 'transport', None), 'url', '')
                                     for c in a.rig.chains],
                      'ghs_av': self.rates.average(), 'ghs_30m': self.rates.window(),
                      'pools': pool_list(a),
                      'alarms': [dict(a.alarm_info[k]) for k in sorted(a.alarm_info)],
                      'config': self._config()}
        return self.state

    def _apply(self, op, args, source, done):
        cid = 'api-%d' % next(self.ids)
        if op == 'restart':
            done(True, None)
            log.warning('restart requested over the cgminer API (%s)', source)
            self.agent.request_restart()
            return
        ok, error, _ = self.agent.run_command(op, cid, args, source)
        done(ok, error)

    # -- api thread -----------------------------------------------------------------------------
    def get_state(self):
        return self.state   # one reference read: the newest complete snapshot

    def submit(self, op, args, source, done):
        self.agent.scheduler.call_soon(self._apply, op, args, source, done)

    def close(self):
        self.server.close()


def host_info():
    """Host name, MAC and kernel for get_system_info.cgi (read once at start)."""
    info = {'hostname': socket.gethostname(), 'kernel': os.uname().release}
    try:
        for dev in sorted(os.listdir('/sys/class/net')):
            if dev == 'lo':
                continue
            with open('/sys/class/net/%s/address' % dev) as f:
                mac = f.read().strip()
            if mac and mac != '00:00:00:00:00:00':
                info['netdevice'], info['macaddr'] = dev, mac.upper()
                break
    except OSError:
        pass
    return info


def pool_list(agent):
    """Pools in the RPC's terms, from the Stratum pool manager's plain status dict
    (`status()`: active index and per pool url, user, state, connected, difficulty, accepted,
    rejected, stale, failures, last_share_age_s) when the agent runs a work path; else []."""
    st = None
    try:
        pools = getattr(agent, 'pools', None)
        if pools is not None and hasattr(pools, 'status'):
            st = pools.status()
        else:
            work = getattr(agent, 'work', None)
            if work is not None and hasattr(work, 'get_status'):
                st = (work.get_status() or {}).get('pool')
    except Exception as e:   # the RPC must answer even if the work path is in trouble
        log.warning('api: pool status unavailable: %s', e)
        return []
    return pools_from_status(st)


def pools_from_status(st):
    if not st:
        return []
    active = st.get('active')
    out = []
    for k, p in enumerate(st.get('pools') or []):
        index = p.get('index', k)
        age = p.get('last_share_age_s')
        out.append({'url': p.get('url', ''), 'user': p.get('user', ''),
                    'alive': bool(p.get('connected')), 'active': index == active,
                    'priority': index, 'accepted': p.get('accepted') or 0,
                    'rejected': p.get('rejected') or 0, 'stale': p.get('stale') or 0,
                    'get_failures': p.get('failures') or 0, 'difficulty': p.get('difficulty') or 0,
                    'last_share_s': int(time.time() - age) if age is not None else 0,
                    'host': p.get('url', '').split('://')[-1].rsplit(':', 1)[0]})
    return out
