"""The agent's one alarm book: every raise and clear, whoever reports it (safety supervisor,
control loop, tuner, link and storage checks, commands), passes here; each alarm is raised once
and cleared once, and only real changes reach the sink (MQTT, hooks, log).

Pure core (MicroPython-safe): the port and `hashpilot run` use the same book.
"""


class AlarmBook:
    def __init__(self, sink):
        self.sink = sink             # sink(event dict) for every real change
        self.active = {}             # id -> {'id', 'severity', 'message', 'board'}

    def __contains__(self, aid):
        return aid in self.active

    def ids(self):
        return sorted(self.active)

    def event(self, ev):
        """An event dict {'id', 'action': 'raise'|'clear', 'severity', 'message', 'board'?}.
        Returns True when it changed the book (and went to the sink)."""
        aid, action = ev.get('id'), ev.get('action')
        if action == 'raise':
            if aid in self.active:
                return False
            self.active[aid] = {'id': aid, 'severity': ev.get('severity', 'warning'),
                                'message': ev.get('message', ''), 'board': ev.get('board')}
        elif action == 'clear':
            if aid not in self.active:
                return False
            del self.active[aid]
        else:
            return False
        self.sink(ev)
        return True

    def raise_(self, aid, message, severity='warning', board=None):
        return self.event({'id': aid, 'action': 'raise', 'severity': severity,
                           'message': message, 'board': board})

    def clear(self, aid, message, board=None):
        return self.event({'id': aid, 'action': 'clear', 'severity': 'info', 'message': message,
                           'board': board})

    def set(self, aid, on, message, severity='warning'):
        """Raise or clear by condition (for checks that run every period)."""
        return self.raise_(aid, message, severity) if on else self.clear(aid, message)
