"""`hashpilot fleet watch --broker H:P [--site S]`: live fleet view in the terminal (Textual).

One row per rig (link, data age, TH/s, W, J/TH, hottest die, fan, safety, tuner, pool, alarms),
totals per site, sort / filter keys, and a rig's detail screen with per-board, per-chip heat maps
(temperature, frequency, error %). Only the visible rows are drawn, so 5 000 rigs stay smooth: a
redraw is one snapshot of the state (plain dicts), a sort and the text of one screenful.

Keys: up/down/pgup/pgdn/home/end move, enter opens a rig, s next sort column, r reverse,
/ filter (enter applies, empty clears), n next site, q quits; in a rig: t/f/e heat map of
temperature/frequency/error, escape back.
"""

import argparse
import sys
import time

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from fleet import fmt
from fleet import state as fstate

SORTS = ('key', 'ths', 'w', 'jth', 'hot_c', 'fan_pct', 'age_s', 'alarms', 'link')
COLUMNS = (   # title, width, cell(row)
    ('rig', 22, lambda r: r['key']),
    ('link', 7, lambda r: r['link']),
    ('age', 5, lambda r: fmt.age(r.get('age_s'))),
    ('model', 8, lambda r: r.get('model') or '-'),
    ('TH/s', 7, lambda r: fmt.num(r.get('ths'))),
    ('W', 6, lambda r: fmt.num(r.get('w'), '%.0f')),
    ('J/TH', 6, lambda r: fmt.num(r.get('jth'), '%.2f')),
    ('hot°C', 6, lambda r: fmt.num(r.get('hot_c'))),
    ('fan%', 5, lambda r: fmt.num(r.get('fan_pct'), '%.0f')),
    ('safety', 9, lambda r: r.get('safety') or '-'),
    ('tuner', 8, lambda r: r.get('tuner') or '-'),
    ('pool', 8, lambda r: r.get('pool') or '-'),
    ('alarms', 24, lambda r: ','.join(r['alarms']) or '-'),
)
SORT_COLUMN = {'key': 'rig', 'ths': 'TH/s', 'w': 'W', 'jth': 'J/TH', 'hot_c': 'hot°C', 'fan_pct': 'fan%',
               'age_s': 'age', 'alarms': 'alarms', 'link': 'link'}
LINK_STYLE = {'online': 'green', 'stale': 'yellow', 'offline': 'bold red', 'unknown': 'dim'}


def _cell(text, width):
    text = str(text)
    return text[:width].ljust(width)


def render_rows(rows, first, count, cursor, sort):
    """Text of the visible window of the table (header + `count` rows from `first`)."""
    out = Text()
    for title, width, _ in COLUMNS:
        mark = '*' if SORT_COLUMN.get(sort) == title else ''
        out.append(_cell(title + mark, width) + ' ', style='bold underline')
    out.append('\n')
    for i in range(first, min(len(rows), first + count)):
        row = rows[i]
        base = 'reverse' if i == cursor else ''
        for title, width, cell in COLUMNS:
            style = base
            if title == 'link':
                style = (base + ' ' + LINK_STYLE.get(row['link'], '')).strip()
            elif title == 'alarms' and row['alarms']:
                style = (base + ' red').strip()
            elif title == 'safety' and row.get('safety') not in fstate.NORMAL:
                style = (base + ' bold yellow').strip()
            out.append(_cell(cell(row), width) + ' ', style=style)
        out.append('\n')
    return out


def render_totals(totals, shown, total_rigs, sort, reverse, text, site):
    out = Text()
    out.append('hashpilot fleet  ', style='bold')
    out.append('%d of %d rigs  sort %s%s  filter %r  site %s\n'
               % (shown, total_rigs, sort, ' (rev)' if reverse else '', text or '', site or 'all'))
    for name in sorted(totals):
        t = totals[name]
        out.append('site %-12s %4d/%-4d online  %9.1f TH/s  %8.1f kW  %s J/TH  %d alarms\n'
                   % (name, t['online'], t['rigs'], t['ths'], t['w'] / 1000.0,
                      fmt.num(t['jth'], '%.2f'), t['alarms']))
    return out


def heat_map(chips, meta, metric, width=36):
    """Per-board rows of coloured chip cells in chain order, with the scale's ends."""
    key = fmt.HEAT_METRICS[metric][0]
    unit = fmt.HEAT_METRICS[metric][1]
    boards = (chips or {}).get('boards') or []
    values = [v for b in boards for v in (b.get(key) or [])]
    lo, hi = fmt.heat_range(metric, values, meta)
    out = Text()
    out.append('%s heat map (%s), scale %.1f .. %.1f %s; x = chip not ok\n' % (metric, unit, lo, hi, unit),
               style='bold')
    for b in boards:
        vals = b.get(key) or []
        bad = dict((p[0], p[1]) for p in (b.get('abnormal') or []) if isinstance(p, list))
        good = [v for v in vals if v is not None]
        out.append('board %s  %d chips  min %s max %s\n' % (
            b.get('index'), len(vals), fmt.num(min(good) if good else None),
            fmt.num(max(good) if good else None)))
        for start in range(0, len(vals), width):
            for i in range(start, min(len(vals), start + width)):
                frac = fmt.heat_frac(metric, vals[i], lo, hi)
                mark = 'x ' if i in bad else '  '
                if frac is None:
                    out.append(mark, style='on grey23')
                else:
                    out.append(mark, style='on rgb(%d,%d,%d)' % fmt.heat_rgb(frac))
            out.append('\n')
    if not boards:
        out.append('no chips snapshot yet (every chips_s, 60 s by default)\n')
    return out


def render_detail(d, metric):
    row, tel = d['row'], d['telemetry'] or {}
    out = Text()
    out.append('%s  %s  %s  age %s\n' % (row['key'], row.get('model') or '?', row['link'],
                                         fmt.age(row.get('age_s'))), style='bold')
    out.append('%s TH/s  %s W  %s J/TH  hottest %s °C  fans %s  tuner %s %s  pool %s\n' % (
        fmt.num(row.get('ths')), fmt.num(row.get('w'), '%.0f'), fmt.num(row.get('jth'), '%.2f'),
        fmt.num(row.get('hot_c')), ','.join(fmt.num(x, '%.0f') for x in tel.get('fan_duty_pct') or []),
        row.get('tuner') or '-', fmt.num(row.get('tuner_pct'), '%.0f%%', ''), row.get('pool') or '-'))
    for b in tel.get('boards') or []:
        out.append('  board %s: %s GH/s  max %s °C  %s MHz  %s mV  %s chips ok  err %s %%  %s%s\n' % (
            b.get('index'), fmt.num(b.get('hashrate_ghs'), '%.0f'), fmt.num(b.get('temp_max_c')),
            fmt.num(b.get('freq_avg_mhz')), fmt.num(b.get('voltage_mv'), '%.0f'), b.get('chips_ok', '-'),
            fmt.num(b.get('err_pct'), '%.2f'), b.get('safety') or '-',
            (' (' + b['safety_reason'] + ')') if b.get('safety_reason') else ''))
    for a in d['alarms']:
        out.append('  ALARM %s %s: %s\n' % (a['severity'], a['id'], a['message']), style='red')
    out.append('\n')
    out.append_text(heat_map(d['chips'], d['meta'], metric))
    return out


class RigScreen(Screen):
    BINDINGS = [Binding('escape', 'app.pop_screen', 'back'), Binding('t', "metric('temp')", 'temp'),
                Binding('f', "metric('freq')", 'freq'), Binding('e', "metric('err')", 'err %')]

    def __init__(self, state, key):
        super().__init__()
        self.state = state
        self.key = key
        self.metric = 'temp'

    def compose(self) -> ComposeResult:
        yield Static(id='detail')
        yield Footer()

    def on_mount(self):
        self.redraw()
        self.set_interval(1.0, self.redraw)

    def action_metric(self, name):
        self.metric = name
        self.redraw()

    def redraw(self):
        d = self.state.rig_detail(self.key)
        if d is not None:
            self.query_one('#detail', Static).update(render_detail(d, self.metric))


class WatchApp(App):
    CSS = '#totals { height: auto; } #table { height: 1fr; } #filter { display: none; }'
    BINDINGS = [Binding('q', 'quit', 'quit'), Binding('s', 'sort', 'sort'),
                Binding('r', 'reverse', 'reverse'), Binding('slash', 'filter', 'filter'),
                Binding('n', 'next_site', 'site'), Binding('enter', 'open', 'open rig'),
                Binding('down', 'move(1)', show=False), Binding('up', 'move(-1)', show=False),
                Binding('pagedown', 'page(1)', show=False), Binding('pageup', 'page(-1)', show=False),
                Binding('home', 'move(-1000000)', show=False), Binding('end', 'move(1000000)', show=False)]

    def __init__(self, state, site=None, refresh_s=1.0):
        super().__init__()
        self.state = state
        self.site = site
        self.refresh_s = refresh_s
        self.sort = 'key'
        self.reverse = False
        self.text = ''
        self.cursor = 0
        self.first = 0
        self.rows = []
        self.all_rows = None
        self.totals = {}
        self.last_redraw_s = 0.0    # how long the last redraw took (the 5 000-rig figure)

    def compose(self) -> ComposeResult:
        yield Static(id='totals')
        # Disabled while hidden so it never takes the keys of the table.
        yield Input(placeholder='filter: rig, model, safety, alarm ... (enter)', id='filter',
                    disabled=True)
        yield Static(id='table')
        yield Footer()

    def on_mount(self):
        self.redraw()
        self.call_after_refresh(self.redraw)    # again once the table has its height
        self.set_interval(self.refresh_s, self.redraw)

    def on_resize(self, event):
        self.call_after_refresh(self.redraw)

    def page_rows(self):
        return max(1, self.query_one('#table', Static).size.height - 1)

    def redraw(self, snapshot=True, resort=True):
        """snapshot: take the state's rows again (the timer, a new site); resort: filter and sort
        them again (sort, reverse, filter keys); a cursor move only draws the window."""
        t0 = time.perf_counter()
        if snapshot or self.all_rows is None:
            self.all_rows = self.state.rows(site=self.site)
            self.totals = self.state.site_totals(rows=self.all_rows)
            resort = True
        if resort:
            rows = fstate.filter_rows(self.all_rows, self.text)
            self.rows = fstate.sort_rows(rows, self.sort, self.reverse)
        self.cursor = max(0, min(self.cursor, len(self.rows) - 1))
        page = self.page_rows()
        if self.cursor < self.first:
            self.first = self.cursor
        elif self.cursor >= self.first + page:
            self.first = self.cursor - page + 1
        self.query_one('#totals', Static).update(render_totals(
            self.totals, len(self.rows), len(self.all_rows), self.sort, self.reverse, self.text, self.site))
        self.query_one('#table', Static).update(render_rows(self.rows, self.first, page, self.cursor, self.sort))
        self.last_redraw_s = time.perf_counter() - t0

    def action_move(self, n):
        self.cursor = max(0, min(len(self.rows) - 1, self.cursor + int(n)))
        self.redraw(snapshot=False, resort=False)

    def action_page(self, n):
        self.action_move(int(n) * self.page_rows())

    def action_sort(self):
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.redraw(snapshot=False)

    def action_reverse(self):
        self.reverse = not self.reverse
        self.redraw(snapshot=False)

    def action_next_site(self):
        sites = sorted(set(r.site for r in list(self.state.rigs.values())))
        if not sites:
            return
        if self.site not in sites:
            self.site = sites[0]
        else:
            i = sites.index(self.site) + 1
            self.site = sites[i] if i < len(sites) else None
        self.cursor = 0
        self.redraw()

    def action_filter(self):
        box = self.query_one('#filter', Input)
        box.disabled = False
        box.display = True
        box.focus()

    def on_input_submitted(self, event):
        self.text = event.value.strip()
        event.input.display = False
        event.input.disabled = True
        self.set_focus(None)
        self.cursor = 0
        self.redraw(snapshot=False)

    def action_open(self):
        if self.rows:
            self.push_screen(RigScreen(self.state, self.rows[self.cursor]['key']))


def main(argv=None):
    p = argparse.ArgumentParser(prog='hashpilot fleet watch', description=__doc__.split('\n')[0])
    p.add_argument('--broker', default='127.0.0.1:1883', help='MQTT broker HOST:PORT')
    p.add_argument('--site', default=None, help='only this site')
    p.add_argument('--username', default=None)
    p.add_argument('--password', default=None)
    p.add_argument('--refresh-s', type=float, default=1.0)
    args = p.parse_args(argv)
    from fleet.client import FleetClient
    st = fstate.FleetState(site=args.site)
    try:
        client = FleetClient(st, args.broker, site=args.site, username=args.username,
                             password=args.password).start()
    except (ConnectionError, ValueError) as e:
        print('hashpilot fleet watch: %s' % e, file=sys.stderr)
        return 1
    try:
        WatchApp(st, site=args.site, refresh_s=args.refresh_s).run()
    finally:
        client.stop()
    return 0
