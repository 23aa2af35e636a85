"""Command inbox: the MQTT link puts commands here; the control thread runs them, bounded."""

import queue
import threading

from agent import commands


class CommandInbox:
    """Looks like a queue to the MQTT link; hands each command to the control thread.

    A flood beyond max_pending is not dropped silently: up to max_busy of the overflowing
    commands are answered "busy" (their op and id kept, nothing else), the rest counted in
    the link's cmd_dropped."""

    def __init__(self, scheduler, handler, max_pending=256, on_busy=None, max_busy=4096):
        self.scheduler = scheduler
        self.handler = handler
        self.on_busy = on_busy
        self.pending = 0
        self.max_pending = max_pending
        self.max_busy = max_busy
        self.busy = []
        self._lock = threading.Lock()

    def put_nowait(self, item):
        with self._lock:
            if self.pending >= self.max_pending:
                if self.on_busy is None or len(self.busy) >= self.max_busy:
                    raise queue.Full
                self.busy.append((item[0], commands.command_id(item[1])))
                if len(self.busy) > 1:
                    return     # an answering task is already queued
                item = None
            else:
                self.pending += 1
        if item is None:
            self.scheduler.call_soon(self._answer_busy)
        else:
            self.scheduler.call_soon(self._run, item)

    def _run(self, item):
        with self._lock:
            self.pending -= 1
        self.handler(*item)

    def _answer_busy(self):
        with self._lock:
            busy, self.busy = self.busy, []
        for op, cid in busy:
            self.on_busy(op, cid)
