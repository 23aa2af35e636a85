"""The agent's one alarm book: every raise and clear, whoever reports it (safety supervisor and
its detectors, control loop, tuner, work engine, link and storage checks, commands), passes
here; each alarm is raised once and cleared once, and only real changes leave the book.

Pure core (MicroPython-safe): `hashpilot run`, the port and a standalone Supervisor use the
same class. Every event dict is built by `event()`.

Where changes go: with a sink, to sink(event) (MQTT, hooks, log), at once or, while the book is
held (`hold()` .. `release()`: the control loop reports after it has applied a tick's actions),
when released. Without a sink (a Supervisor on its own, the tests, MicroPython checks) they
queue until `drain()`.
"""

SEVERITIES = ('info', 'warning', 'critical')


def event(aid, action, severity, message, board=None, now_s=None):
    """The one shape of an alarm event: action 'raise' or 'clear'; board index or None;
    now_s in the reporter's clock (None when it has none)."""
    return {'id': aid, 'action': action, 'severity': severity, 'message': message,
            'board': board, 'now_s': now_s}


class AlarmBook:
    def __init__(self, sink=None):
        self.sink = sink             # sink(event dict) for every real change; None: queue
        self.active = {}             # id -> {'id', 'severity', 'message', 'since_s', 'board'}
        self.order = []              # active ids, oldest first
        self.pending = []            # changes not yet handed out
        self.held = 0
        self.flushing = False        # inside flush(): a sink's own alarms queue behind

    def __contains__(self, aid):
        return aid in self.active

    def is_active(self, aid):
        return aid in self.active

    def ids(self, prefix=None):
        """Active ids, oldest first; only those starting with prefix when given."""
        if prefix is None:
            return list(self.order)
        return [a for a in self.order if a.startswith(prefix)]

    def event(self, ev):
        """Record an event dict (see event()). Returns True when it changed the book. A raise of
        an active alarm only refreshes its message (status shows current numbers)."""
        aid, action = ev.get('id'), ev.get('action')
        if action == 'raise':
            a = self.active.get(aid)
            if a is not None:
                a['message'] = ev.get('message', '')
                return False
            self.active[aid] = {'id': aid, 'severity': ev.get('severity', 'warning'),
                                'message': ev.get('message', ''), 'since_s': ev.get('now_s'),
                                'board': ev.get('board')}
            self.order.append(aid)
        elif action == 'clear':
            if self.active.pop(aid, None) is None:
                return False
            self.order.remove(aid)
        else:
            return False
        self.pending.append(ev)
        if self.sink is not None and not self.held:
            self.flush()
        return True

    def raise_(self, aid, severity, message, now_s=None, board=None):
        return self.event(event(aid, 'raise', severity, message, board, now_s))

    def clear(self, aid, message, now_s=None):
        """Clear an active alarm; the event names the board the raise named."""
        a = self.active.get(aid)
        if a is None:
            return False
        return self.event(event(aid, 'clear', 'info', message, a['board'], now_s))

    def set(self, aid, on, severity, message, now_s=None, board=None):
        """Raise or clear by condition (for checks that run every period)."""
        if on:
            return self.raise_(aid, severity, message, now_s, board)
        return self.clear(aid, message, now_s)

    def hold(self):
        """Keep changes back from the sink until release() (nests)."""
        self.held += 1

    def release(self):
        self.held = max(0, self.held - 1)
        if self.sink is not None and not self.held:
            self.flush()

    def flush(self):
        """Hand queued changes to the sink, in order. An event leaves the queue only once the
        sink has taken it: if the sink raises, that event and the rest stay queued for the next
        flush (and the exception goes to the caller). A change the sink itself causes is queued
        behind and handed out by this same loop, never twice."""
        if self.flushing:
            return
        self.flushing = True
        try:
            while self.pending:
                self.sink(self.pending[0])
                self.pending.pop(0)
        finally:
            self.flushing = False

    def drain(self):
        """Queued changes for a caller that hands them on itself (no sink); [] with a sink."""
        if self.sink is not None:
            return []
        out = self.pending
        self.pending = []
        return out
