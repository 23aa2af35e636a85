"""Pipelined register reads on one BM13xx chain: many requests in flight, answers matched by
(chip address, register), nonce frames interleaved and counted, per-request deadlines from the
baud and queue position, retries. Never a request/response ping-pong over the whole chain.
"""

from hal import codec

# Fixed latency allowance on top of wire time: pty + scheduler + chip turnaround (wall seconds).
BASE_TIMEOUT_S = 0.06
# Deadline = base + position-in-flight * one exchange's wire time * this slack.
SLACK = 3.0


def auto_window(baud, resp_len=11):
    """Requests to keep in flight: enough answers to cover ~15 ms of host/pty latency at this
    baud, at least 16, at most 128. At 3.125 Mbaud an answer lasts 35 us, so 64 in flight
    cover only 2.2 ms and the line idles while the host refills (measured: 324 reads took
    14.1 ms with 64, 12.2 ms with 128, against 11.4 ms of wire time)."""
    per_resp_s = resp_len * 10.0 / baud
    w = int(0.015 / per_resp_s) + 1
    return max(16, min(128, w))


class ReadPipeline:
    """Runs one batch of register reads on a transport, feeding a ResponseFramer.

    on_nonce(decoded_frame) is called for every nonce frame seen while reading.
    on_stray(decoded_frame) for register answers nobody asked for (late answers after a timeout).
    """

    def __init__(self, transport, framer, on_nonce=None, on_stray=None, layout=None,
                 window=None, wall=None):
        self.transport = transport
        self.framer = framer
        self.on_nonce = on_nonce
        self.on_stray = on_stray
        self.layout = layout
        self.window = window
        self._wall = wall
        self.last_stats = {}

    def _now(self):
        if self._wall is not None:
            return self._wall()
        import time
        return time.monotonic()

    def handle_bytes(self, data, inflight, results, times, now):
        """Feed bytes; resolve answered requests. Returns number of answers matched."""
        matched = 0
        for frame in self.framer.feed(data):
            d = codec.decode_response(frame, self.layout, crc_checked=True)
            kind = d['kind']
            if kind == 'reg':
                key = (d['chip_addr'], d['reg'])
                if key in inflight:
                    del inflight[key]
                    results[key] = d['value']
                    matched += 1
                elif self.on_stray is not None:
                    self.on_stray(d)
            elif kind == 'nonce':
                if self.on_nonce is not None:
                    self.on_nonce(d)
        return matched

    def run(self, requests, retries=2, no_retry=None):
        """Read every (addr, reg) in requests. Returns ({key: value|None}, {key: wall time the
        chip got the (last) request, i.e. when it sampled the register}).

        Keys in no_retry (e.g. chips already known dead) get one attempt only.
        """
        order = []
        seen = set()
        for key in requests:
            key = (key[0] & 0xFF, key[1] & 0xFF)
            if key not in seen:
                seen.add(key)
                order.append(key)
        results = {}
        times = {}
        if not order:
            return results, times
        flen = self.framer.frame_len
        byte_s = 10.0 / self.transport.baud
        exch_s = max(flen, 7) * byte_s
        tx_free = 0.0
        window = self.window or auto_window(self.transport.baud, flen)
        queue = list(reversed(order))          # pop() from the end = FIFO
        attempts = {}
        inflight = {}                          # key -> deadline (wall); dict keeps send order
        sent = 0
        retried = 0
        timeouts = 0
        answered = 0
        aborted = False
        silent_after = min(window, len(order))
        frames0 = self.framer.frames             # any valid frame (a nonce too) proves life
        t0 = self._now()
        while queue or inflight:
            now = self._now()
            if queue and len(inflight) < window:
                out = bytearray()
                tx_free = max(tx_free, now)
                while queue and len(inflight) < window:
                    key = queue.pop()
                    pos = len(inflight) + 1
                    inflight[key] = now + BASE_TIMEOUT_S + pos * exch_s * SLACK
                    attempts[key] = attempts.get(key, 0) + 1
                    out += codec.read_reg(key[1], key[0])
                    # When the chip gets the request (and samples the register): our TX
                    # backlog drains at the baud; answers may queue behind nonces, requests not.
                    tx_free += 7 * byte_s
                    times[key] = tx_free
                    sent += 1
                self.transport.write(bytes(out))
            # Wait for bytes until the earliest deadline (or briefly, while more can be sent).
            earliest = min(inflight.values()) if inflight else now
            wait = max(0.0, min(earliest - now, 0.05))
            data = self.transport.read(wait)
            now = self._now()
            if data:
                answered += self.handle_bytes(data, inflight, results, times, now)
            expired = [k for k, dl in inflight.items() if dl <= now]
            if expired and not answered and self.framer.frames == frames0 \
                    and timeouts + len(expired) >= silent_after:
                # A whole window timed out and nothing answered: the chain is silent (board
                # off, cable out). Give up on the batch instead of waiting out every request.
                for key in order:
                    if key not in results:
                        results[key] = None
                timeouts += len(expired)
                aborted = True
                break
            for key in expired:
                del inflight[key]
                timeouts += 1
                limit = 1 if (no_retry and key in no_retry) else retries + 1
                if attempts[key] < limit:
                    queue.insert(0, key)       # after what is already queued
                    retried += 1
                else:
                    results[key] = None
        self.last_stats = {'requests': len(order), 'sent': sent, 'retries': retried,
                           'timeouts': timeouts, 'window': window, 'silent': aborted,
                           'elapsed_s': self._now() - t0}
        return results, times

    def drain_for(self, seconds):
        """Read and dispatch what is waiting, then whatever arrives for `seconds` (nonces, late
        answers)."""
        end = self._now() + seconds
        while True:
            now = self._now()
            if now >= end:
                data = self.transport.read(0)
                if data:
                    self.handle_bytes(data, {}, {}, {}, now)
                    continue
                return
            data = self.transport.read(min(0.05, end - now))
            if data:
                self.handle_bytes(data, {}, {}, {}, now)
