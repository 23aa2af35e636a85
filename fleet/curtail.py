"""`hashpilot fleet curtail --site S --max-kw X [--ramp-s R] [--policy efficiency|proportional]`:
bring a site under a power cap, and `--restore` it afterwards.

1. Waits for every rig of the site to report telemetry; the site's power is the sum of the
   online rigs' measured wall power.
2. Picks each rig's power target (fleet/allocate.py: most hashes for the cap from the model's
   tuning curve through the rig's own operating point, least efficient shed first; or the same
   fraction from everyone) a margin under the cap, and sends `set_power_target` to every rig.
3. Follows `cmd/result` and telemetry: a rig without an answer gets the command again; a rig that
   refuses, stays silent or does not come down is escalated (its power is taken as it is and the
   others give more); when every tune is done and the site is still over the cap, all targets go
   down by the excess. Ends when the site is under the cap or after --ramp-s (+ grace), prints a
   table and saves what it did for `--restore` (back to each rig's power before the cap).
"""

import argparse
import collections
import json
import os
import sys
import time

from fleet import allocate
from fleet import curves as model_curves
from fleet import state as fstate
from hal import models

RESULT_S = 15.0          # wait this long for cmd/result before sending again
TRIES = 3
OVER_PCT = 5.0           # a rig more than this over its target after its tune: not complying
UNDER_PCT = 2.0          # a site ending further under its cap than this is re-planned upwards
SAMPLES = 6              # telemetry samples averaged for the 'after' figures


def rig_limits(model_name, w_now):
    """(min, max) target W: the agent's own bounds (20 % of nameplate .. PSU limit)."""
    try:
        m = models.get(model_name)
    except (KeyError, AttributeError):
        return 0.2 * w_now, w_now
    return round(0.2 * m['nameplate_w']), m['power_limit_w']


def rig_curve(model_name, w, ths):
    """The model's tuning curve scaled through the rig's operating point, or None."""
    pts = model_curves.CURVES.get(str(model_name).upper()) if model_name else None
    if not pts or not ths:
        return None
    h = allocate.curve_of({'curve': pts, 'w': w, 'ths': ths})
    k = ths / h(w) if h(w) > 0 else 1.0
    return [[p, hs * k] for p, hs in pts]


class Tracker:
    """Per-rig telemetry samples from the state listener (power, hashrate, tuner, hottest die)."""

    def __init__(self, state, site):
        self.site = site
        self.samples = collections.defaultdict(lambda: collections.deque(maxlen=SAMPLES * 4))
        state.listeners.append(self.on_message)

    def on_message(self, kind, site, rig, msg):
        if kind != 'telemetry' or site != self.site or msg.get('historical'):
            return
        boards = msg.get('boards') or []
        temps = [b.get('temp_max_c') for b in boards if b.get('temp_max_c') is not None]
        self.samples[site + '/' + rig].append({
            't': time.monotonic(), 'w': msg.get('power_w'), 'ths': (msg.get('hashrate_ghs') or 0) / 1000.0,
            'tuner': (msg.get('tuner') or {}).get('state'), 'target': (msg.get('tuner') or {}).get('target'),
            'hot_c': max(temps) if temps else None,
            'safety': sorted(set([b.get('safety') for b in boards if b.get('safety') not in fstate.NORMAL]
                                 + ([] if msg.get('state') in fstate.NORMAL else ['rig ' + str(msg['state'])])))})

    def recent(self, key, since):
        return [s for s in list(self.samples[key]) if s['t'] >= since]


class Curtailer:
    def __init__(self, state, client, site, cap_w, policy='efficiency', ramp_s=300.0, margin_pct=1.0,
                 log=None, result_s=RESULT_S, tries=TRIES, floors=None):
        self.state = state
        self.client = client
        self.site = site
        self.cap_w = cap_w
        self.policy = policy
        self.ramp_s = ramp_s
        self.margin_pct = margin_pct
        self.log = log or (lambda text: None)
        self.result_s = result_s
        self.tries = tries
        # Lowest power each rig's tuner really reached when asked for less (learnt, kept in the
        # state file): planned as the rig's minimum next time.
        self.floors = dict(floors or {})
        self.tracker = Tracker(state, site)
        self.rigs = {}          # key -> record (see plan)
        self.alloc_input = []   # the rigs as fleet/allocate sees them (re-planned on escalation)

    # -- discovery and plan ----------------------------------------------------------------------
    def discover(self, wait_s=30.0, expect=None):
        """Online, running rigs of the site with SAMPLES steady telemetry samples; waits until
        `expect` rigs (or wait_s). A rig's power is the mean of its last samples."""
        deadline = time.monotonic() + wait_s
        while True:
            rows = []
            for r in self.state.rows(site=self.site):
                s = [x for x in list(self.tracker.samples[r['key']])[-SAMPLES:] if x['w']]
                if r['link'] == 'online' and r.get('state') in fstate.NORMAL and len(s) >= 3:
                    rows.append(dict(r, w=sum(x['w'] for x in s) / len(s),
                                     ths=sum(x['ths'] for x in s) / len(s)))
            if expect is not None and len(rows) >= expect or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)

    def plan(self, rows, before=None):
        """Targets for the online rows; `before` = {key: W} to restore instead of a cap."""
        alloc = []
        for r in rows:
            lo, hi = rig_limits(r.get('model'), r['w'])
            lo = min(max(lo, self.floors.get(r['key'], 0)), r['w'])
            rec = {'key': r['key'], 'rig': r['rig'], 'model': r.get('model'), 'before_w': r['w'],
                   'before_ths': r.get('ths'), 'min_w': lo, 'max_w': min(hi, r['w']), 'target_w': None,
                   'cmd': None, 'sent_s': None, 'tries': 0, 'status': 'planned', 'accepted_s': None}
            self.rigs[r['key']] = rec
            alloc.append({'key': r['key'], 'w': r['w'], 'ths': r.get('ths') or 0.0, 'min_w': lo,
                          'max_w': min(hi, r['w']), 'curve': rig_curve(r.get('model'), r['w'], r.get('ths'))})
        if before is not None:
            for rec in self.rigs.values():
                hi = rig_limits(rec['model'], rec['before_w'])[1]
                rec['target_w'] = min(hi, before.get(rec['key'], rec['before_w']))
            return
        goal_w = self.cap_w * (1.0 - self.margin_pct / 100.0)
        self.alloc_input = alloc
        targets = allocate.allocate(alloc, goal_w, self.policy)
        for key, w in targets.items():
            self.rigs[key]['target_w'] = round(w)

    # -- commands --------------------------------------------------------------------------------
    def send(self, rec, now, retry=False):
        site, rig = rec['key'].split('/', 1)
        rec['cmd'] = self.client.send(site, rig, 'set_power_target', {'w': float(rec['target_w'])})
        rec.setdefault('sent', {})[rec['cmd']] = rec['target_w']
        rec['sent_s'] = now
        rec['tries'] = rec['tries'] + 1 if retry else 1     # a new target starts counting again
        rec['status'] = 'sent'
        rec['accepted_s'] = None

    def _late(self, rec, now):
        """A rig given up for silence that answers after all: follow it again."""
        for cid, target in list(rec.get('sent', {}).items())[::-1]:
            res = self.state.result(rec['key'], cid)
            if res is not None and res.get('ok'):
                self.log('%s answered late: following its %d W target' % (rec['key'], target))
                rec.update(status='accepted', accepted_s=now, cmd=cid, target_w=target, why=None)
                return

    def _answers(self, now):
        for rec in self.rigs.values():
            if rec['status'] == 'escalated' and str(rec.get('why')).startswith('no answer'):
                self._late(rec, now)
            if rec['status'] != 'sent':
                continue
            res = self.state.result(rec['key'], rec['cmd'])
            if res is not None:
                if res.get('ok'):
                    rec['status'], rec['accepted_s'] = 'accepted', now
                else:
                    rec['error'] = res.get('error')
                    self.escalate(rec, 'refused: %s' % res.get('error'), now)
            elif now - rec['sent_s'] > self.result_s:
                if rec['tries'] < self.tries:
                    self.log('%s: no cmd/result after %.0f s, sending again' % (rec['key'], self.result_s))
                    self.send(rec, now, retry=True)
                else:
                    self.escalate(rec, 'no answer after %d tries' % self.tries, now)

    def escalate(self, rec, why, now):
        """The rig cannot be moved: take its power as it is, the others give the difference."""
        self.log('%s escalated: %s' % (rec['key'], why))
        rec['status'] = 'escalated'
        rec['why'] = why
        self.replan(now, 'around ' + rec['key'], raise_ok=False)

    def replan(self, now, why, raise_ok=True):
        """New targets for the rigs that comply, for the cap less what the escalated rigs draw.
        Lower targets always go out; higher ones only with raise_ok (the site ended too far
        under the cap: budget left on the table)."""
        others = [a for a in self.alloc_input if self.rigs[a['key']]['status'] != 'escalated']
        if not others or self.cap_w is None:     # restoring: nothing to re-plan
            return 0
        budget = self.cap_w * (1.0 - self.margin_pct / 100.0) - sum(
            self.measured_w(k) or r['before_w'] for k, r in self.rigs.items() if r['status'] == 'escalated')
        try:
            targets = allocate.allocate(others, budget, self.policy)
        except ValueError as e:
            self.log('cannot re-plan %s: %s' % (why, e))
            return 0
        sent = 0
        for key, w in targets.items():
            other = self.rigs[key]
            if round(w) < other['target_w'] - 1 or raise_ok and round(w) > other['target_w'] + 1:
                other['target_w'] = round(w)
                self.send(other, now)
                sent += 1
        return sent

    # -- following -------------------------------------------------------------------------------
    def settled(self, key):
        """The rig's samples for the 'after' figures: the last SAMPLES since its tune was done,
        else its last SAMPLES. The last rig to finish has only two 'done' samples; taking the
        samples before them too would mix in the power it was leaving, more or less of it
        depending on how fast the rigs and this process run."""
        rec = self.rigs.get(key)
        if rec is not None and rec['accepted_s'] is not None:
            done = [x for x in self.tracker.recent(key, rec['accepted_s']) if x['tuner'] == 'done']
            if done:
                return done[-SAMPLES:]
        return list(self.tracker.samples[key])[-SAMPLES:]

    def measured_w(self, key, n=SAMPLES):
        s = [x['w'] for x in self.settled(key)[-n:] if x['w'] is not None]
        return sum(s) / len(s) if s else None

    def tuned(self, rec):
        """Telemetry since the command was accepted shows the tune done (two samples: settled)."""
        if rec['accepted_s'] is None:
            return False
        s = self.tracker.recent(rec['key'], rec['accepted_s'])
        done = [x for x in s if x['tuner'] == 'done']
        return len(done) >= 2 and s[-1]['tuner'] == 'done'

    def site_w(self):
        """Measured site power: online rigs, and stale ones at their last power (a rig whose
        telemetry stopped without a Will may still draw it); rigs that sent their Will: 0."""
        total = 0.0
        for row in self.state.rows(site=self.site):
            if row['link'] in ('online', 'stale'):
                total += self.measured_w(row['key'], 3) or row.get('w') or 0.0
        return total

    def _comply(self, now):
        for rec in self.rigs.values():
            if rec['status'] == 'accepted' and self.tuned(rec):
                done = [x['w'] for x in self.tracker.recent(rec['key'], rec['accepted_s'])
                        if x['tuner'] == 'done' and x['w'] is not None][-3:]
                w = sum(done) / len(done) if done else None
                if w is not None and w > rec['target_w'] * (1 + OVER_PCT / 100.0):
                    self.floors[rec['key']] = round(w)
                    self.escalate(rec, 'holds %.0f W over its %d W target' % (w, rec['target_w']), now)

    def run(self, poll_s=0.5, grace_s=60.0, settle_rounds=3, follow=True):
        """Send, follow, correct; returns True when the site ends under the cap. Without
        `follow`, returns once every rig has answered (True when all accepted)."""
        t0 = time.monotonic()
        for rec in self.rigs.values():
            self.send(rec, t0)
        rounds = 0
        while True:
            now = time.monotonic()
            self._answers(now)
            if not follow and not [r for r in self.rigs.values() if r['status'] == 'sent']:
                return all(r['status'] == 'accepted' for r in self.rigs.values())
            self._comply(now)
            moving = [r for r in self.rigs.values() if r['status'] in ('sent', 'accepted') and not self.tuned(r)]
            if not moving:
                done, ok = self._settle(now, rounds >= settle_rounds)
                if done:
                    return ok
                rounds += 1
            if now - t0 > self.ramp_s + grace_s:
                self.log('ramp time over with %d rigs still tuning' % len(moving))
                return self.cap_w is not None and self.site_w() <= self.cap_w
            time.sleep(poll_s)

    def _settle(self, now, last):
        """Every tune is done: (True, ok) to stop, or (False, None) after a correction."""
        if self.cap_w is None:      # restore: every rig back near its old power
            return True, all(r['status'] == 'accepted' for r in self.rigs.values())
        site = self.site_w()
        low = site < self.cap_w * (1.0 - UNDER_PCT / 100.0)
        if site <= self.cap_w and not low or last:
            return True, site <= self.cap_w
        if low:
            self.log('site %.0f W, more than %.1f %% under the cap: re-planning' % (site, UNDER_PCT))
            if not self.replan(now, 'the unused budget'):
                return True, True
            return False, None
        cut = (site - self.cap_w * (1.0 - self.margin_pct / 100.0)) / site
        self.log('site %.0f W over the cap after the tunes: all targets -%.1f %%' % (site, 100 * cut))
        for rec in self.rigs.values():
            if rec['status'] == 'accepted':
                rec['target_w'] = max(rec['min_w'], round(rec['target_w'] * (1 - cut)))
                self.send(rec, now)
        return False, None

    # -- report ----------------------------------------------------------------------------------
    def report(self):
        rows = []
        for key in sorted(self.rigs):
            rec = self.rigs[key]
            s = list(self.tracker.samples[key])[-SAMPLES:]     # hottest die, safety: all recent
            w = [x['w'] for x in self.settled(key) if x['w'] is not None]
            ths = [x['ths'] for x in self.settled(key)]
            after_w = sum(w) / len(w) if w else None
            after_ths = sum(ths) / len(ths) if ths else None
            hot = [x['hot_c'] for x in s if x['hot_c'] is not None]
            rows.append({'rig': key, 'model': rec['model'], 'before_w': rec['before_w'],
                         'target_w': rec['target_w'], 'after_w': after_w, 'before_ths': rec['before_ths'],
                         'after_ths': after_ths,
                         'j_per_th': after_w / after_ths if after_w and after_ths else None,
                         'hot_c': max(hot) if hot else None,
                         'safety': sorted(set(sum([x['safety'] for x in s], []))),
                         'status': rec['status'] if rec['status'] != 'accepted' else 'ok',
                         'why': rec.get('why')})
        return rows


def format_table(rows, cap_w=None):
    def f(x, fmt='%.0f'):
        return '-' if x is None else fmt % x
    out = ['%-24s %-8s %8s %8s %8s %8s %8s %6s %6s  %s' % (
        'rig', 'model', 'before W', 'target W', 'after W', 'TH/s was', 'TH/s now', 'J/TH', 'hot°C', 'status')]
    for r in rows:
        out.append('%-24s %-8s %8s %8s %8s %8s %8s %6s %6s  %s%s' % (
            r['rig'], r['model'] or '-', f(r['before_w']), f(r['target_w']), f(r['after_w']),
            f(r['before_ths'], '%.1f'), f(r['after_ths'], '%.1f'), f(r['j_per_th'], '%.2f'), f(r['hot_c'], '%.1f'),
            r['status'], (' (' + r['why'] + ')') if r.get('why') else ''))
    bw = sum(r['before_w'] or 0 for r in rows)
    aw = sum(r['after_w'] or 0 for r in rows)
    bt = sum(r['before_ths'] or 0 for r in rows)
    at = sum(r['after_ths'] or 0 for r in rows)
    out.append('%-24s %-8s %8.0f %8.0f %8.0f %8.1f %8.1f %6s' % (
        'site', '', bw, sum(r['target_w'] or 0 for r in rows), aw, bt, at, f(aw / at if at else None, '%.2f')))
    if cap_w:
        out.append('cap %.0f W: site %s (%.2f %% of the cap)' % (
            cap_w, 'UNDER' if aw <= cap_w else 'OVER', 100.0 * aw / cap_w))
    return '\n'.join(out)


def _state_path(args):
    return args.state_file or os.path.join(os.path.expanduser('~'), '.hashpilot', 'curtail-%s.json' % args.site)


def main(argv=None):
    p = argparse.ArgumentParser(prog='hashpilot fleet curtail', description=__doc__.split('\n')[0])
    p.add_argument('--broker', default='127.0.0.1:1883')
    p.add_argument('--site', required=True)
    p.add_argument('--max-kw', type=float, help='site power cap in kW')
    p.add_argument('--ramp-s', type=float, default=300.0, help='bring the site under the cap within this')
    p.add_argument('--policy', choices=allocate.POLICIES, default='efficiency')
    p.add_argument('--margin-pct', type=float, default=1.0, help='aim this far under the cap')
    p.add_argument('--restore', action='store_true', help='back to the power before the last cap')
    p.add_argument('--rigs', type=int, default=None, help='wait until this many rigs report')
    p.add_argument('--discover-s', type=float, default=25.0, help='wait this long for telemetry')
    p.add_argument('--state-file', default=None, help='where the plan is kept for --restore')
    p.add_argument('--json', action='store_true', help='print the table as JSON')
    p.add_argument('--no-follow', action='store_true',
                   help='return once every rig accepted its target (do not wait for the tunes)')
    p.add_argument('--username', default=None)
    p.add_argument('--password', default=None)
    args = p.parse_args(argv)
    if not args.restore and (args.max_kw is None or args.max_kw <= 0):
        p.error('--max-kw X (> 0) or --restore')
    from fleet.client import FleetClient
    st = fstate.FleetState(site=args.site)
    client = FleetClient(st, args.broker, site=args.site, username=args.username, password=args.password)
    log = lambda text: print('curtail: ' + text, file=sys.stderr, flush=True)   # noqa: E731
    cap_w = None if args.restore else args.max_kw * 1000.0
    saved = {}
    try:
        with open(_state_path(args)) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        pass
    cur = Curtailer(st, client, args.site, cap_w, args.policy, args.ramp_s, args.margin_pct, log,
                    floors=saved.get('floors') if isinstance(saved, dict) else None)
    try:
        client.start()
    except (ConnectionError, ValueError) as e:
        print('hashpilot fleet curtail: %s' % e, file=sys.stderr)
        return 1
    try:
        rows = cur.discover(args.discover_s, args.rigs)
        if not rows:
            print('hashpilot fleet curtail: no online rig with telemetry in site %s' % args.site, file=sys.stderr)
            return 1
        before = None
        if args.restore:
            before = saved.get('before_w') if isinstance(saved, dict) else None
            if not isinstance(before, dict):
                print('hashpilot fleet curtail: nothing to restore in %s' % _state_path(args), file=sys.stderr)
                return 1
        try:
            cur.plan(rows, before)
        except ValueError as e:
            print('hashpilot fleet curtail: %s' % e, file=sys.stderr)
            return 1
        log('%d rigs, site %.0f W, %s' % (len(rows), sum(r['w'] for r in rows),
                                          'restoring' if args.restore else 'cap %.0f W (%s)' % (cap_w, args.policy)))
        ok = cur.run(follow=not args.no_follow)
        table = cur.report()
        if not args.restore:
            path = _state_path(args)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                json.dump({'site': args.site, 'cap_w': cap_w, 'floors': cur.floors,
                           'before_w': dict((r['rig'], r['before_w']) for r in table)}, f)
    finally:
        client.stop()
    if args.json:
        print(json.dumps({'ok': ok, 'cap_w': cap_w, 'rigs': table}))
    else:
        print(format_table(table, cap_w))
    return 0 if ok else 3
