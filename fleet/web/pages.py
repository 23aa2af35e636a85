"""HTML shells of the dashboard pages; the data comes live from /events/... (static/app.js)."""

import html


def _esc(x):
    return html.escape(str(x), quote=True)


def _login_box(user, sess, next_path):
    if user:
        return ('<form method="post" action="/logout" class="login">operator <b>%s</b> '
                '<button>log out</button></form>' % _esc(user))
    return ('<form method="post" action="/login" class="login"><input type="hidden" name="next" value="%s">'
            '<input name="user" placeholder="operator" autocomplete="username">'
            '<input name="password" type="password" placeholder="password" autocomplete="current-password">'
            '<button>log in</button> <span class="ro">read-only</span></form>' % _esc(next_path))


def _page(title, body, user, sess, next_path, data):
    attrs = ' '.join('data-%s="%s"' % (k, _esc(v)) for k, v in sorted(data.items()))
    csrf = sess['csrf'] if sess else ''
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<title>%s</title><link rel="stylesheet" href="/static/style.css"></head>'
            '<body %s data-csrf="%s" data-user="%s"><header><a href="/" class="brand">hashpilot fleet</a>'
            '<nav><a href="/">fleet</a> <a href="/alarms">alarms</a> <a href="/metrics">metrics</a></nav>'
            '%s<span id="live" class="live">connecting…</span></header><main>%s</main>'
            '<script src="/static/app.js"></script></body></html>'
            % (_esc(title), attrs, _esc(csrf), _esc(user or ''), _login_box(user, sess, next_path), body))


def fleet_page(user, sess):
    body = ('<section id="totals" class="cards"></section>'
            '<section class="charts"><canvas id="chart-ths" width="440" height="160"></canvas>'
            '<canvas id="chart-w" width="440" height="160"></canvas>'
            '<canvas id="chart-jth" width="440" height="160"></canvas></section>'
            '<section class="controls"><input id="filter" placeholder="filter rig, model, safety, alarm">'
            '<select id="sort"><option value="key">rig</option><option value="ths">TH/s</option>'
            '<option value="w">W</option><option value="jth">J/TH</option><option value="hot_c">hottest</option>'
            '<option value="fan_pct">fan</option><option value="age_s">age</option>'
            '<option value="alarms">alarms</option><option value="link">link</option></select>'
            '<label><input type="checkbox" id="rev"> reverse</label> <span id="count"></span>'
            ' <button id="prev">&lt;</button><button id="next">&gt;</button></section>'
            '<table id="rigs"><thead><tr><th>rig</th><th>link</th><th>age</th><th>model</th><th>TH/s</th>'
            '<th>W</th><th>J/TH</th><th>hottest °C</th><th>fan %</th><th>safety</th><th>tuner</th>'
            '<th>pool</th><th>alarms</th></tr></thead><tbody></tbody></table>'
            '<h2>alarm log</h2><table id="alarms"><tbody></tbody></table>')
    return _page('hashpilot fleet', body, user, sess, '/', {'page': 'fleet'})


def alarms_page(user, sess):
    body = '<h2>alarm log</h2><table id="alarms"><tbody></tbody></table>'
    return _page('hashpilot alarms', body, user, sess, '/alarms', {'page': 'alarms'})


def rig_page(site, rig, user, sess):
    cmds = ''
    if user:
        cmds = ('<section id="commands" class="commands"><h2>commands</h2>'
                '<label>power target W <input id="cmd-w" type="number" min="100" step="50"></label>'
                '<button data-op="set_power_target">set</button> '
                '<button data-op="set_fan" data-args=\'{"mode":"auto"}\'>fans auto</button> '
                '<button data-op="identify" data-args=\'{"duration_s":60}\'>identify</button> '
                '<button data-op="reset_safety" data-args=\'{}\'>reset safety</button> '
                '<button data-op="autotune" data-args=\'{"action":"stop"}\'>stop tuner</button>'
                '<div id="cmd-out"></div></section>')
    body = ('<h1 id="rig-title">%s / %s</h1><section id="rig-summary" class="cards"></section>%s'
            '<section class="heat"><div class="metrics"><button data-metric="temp" class="on">temperature</button>'
            '<button data-metric="freq">frequency</button><button data-metric="err">error %%</button>'
            '<span id="scale"></span></div><div id="boards"></div></section>'
            '<table id="board-table"><thead><tr><th>board</th><th>GH/s</th><th>max °C</th><th>MHz</th>'
            '<th>mV</th><th>chips ok</th><th>err %%</th><th>safety</th></tr></thead><tbody></tbody></table>'
            '<section class="charts"><canvas id="chart-ths" width="440" height="160"></canvas>'
            '<canvas id="chart-w" width="440" height="160"></canvas>'
            '<canvas id="chart-jth" width="440" height="160"></canvas></section>'
            '<h2>active alarms</h2><table id="alarms"><tbody></tbody></table>'
            % (_esc(site), _esc(rig), cmds))
    return _page('%s/%s - hashpilot' % (site, rig), body, user, sess, '/rig/%s/%s' % (site, rig),
                 {'page': 'rig', 'site': site, 'rig': rig})


def login_failed():
    return ('<!doctype html><html><body><p>Wrong operator name or password.</p>'
            '<p><a href="/">back</a></p></body></html>')
