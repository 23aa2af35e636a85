"""`hashpilot fleet ingest --nats ...`: the consumer fed by site uplinks through the NATS cluster.

For each of its sites (`--sites`) the consumer has two paths to the same batches
(fleet/natsbatch.py):
- live: a plain NATS subscription on `hpd.<site>`; a batch arrives as soon as the uplink
  publishes it, whatever the state of the stream's Raft group;
- lossless: a durable JetStream pull consumer `<client-id>-<site>` on the stream `HP` (R3,
  consumer state in memory, replicated): everything the stream stored, acknowledged after it
  is taken (after the store has committed it when there is one).
A batch taken on one path is skipped on the other (batch id); within a batch the per-stream
Sequencer drops what a rig or an uplink sent twice. Latency is counted on the first arrival.
"""

import asyncio
import sys
import time

from fleet import natsbatch


class NatsFeed:
    def __init__(self, ing, args):
        self.ing = ing
        self.args = args
        self.seen = natsbatch.SeenIds()
        self.nc = self.js = None
        self.stats = {'live_batches': 0, 'durable_batches': 0, 'durable_skipped': 0,
                      'live_skipped': 0, 'bad_batches': 0, 'fetch_timeouts': 0,
                      'fetch_errors': 0, 'nats_reconnects': 0}

    def take(self, msg, path):
        """Feed a batch's messages to the consumer once; True if it was new."""
        bid = (msg.headers or {}).get('Nats-Msg-Id')
        if bid is not None and not self.seen.add(bid):
            self.stats[path + '_skipped'] += 1
            return False
        try:
            entries = natsbatch.decode(msg.data)
        except ValueError:
            self.stats['bad_batches'] += 1
            return False
        self.stats[path + '_batches'] += 1
        on_message = self.ing.on_message
        for topic, payload, retain in entries:
            on_message(topic, payload, retain, False)
        return True

    async def _live(self, msg):
        self.take(msg, 'live')

    async def _pull(self, sub):
        errors = 0
        while not self.ing.stopping:
            try:
                msgs = await sub.fetch(self.args.fetch_batch, timeout=1.0)
                errors = 0
            except asyncio.CancelledError:
                raise
            except asyncio.TimeoutError:    # nothing to take, or an election (nats.errors too)
                self.stats['fetch_timeouts'] += 1
                continue
            except Exception as e:          # noqa: BLE001 - no durable, closed connection: fail fast
                self.stats['fetch_errors'] += 1
                errors += 1
                if errors in (1, 10) or errors % 100 == 0:
                    print('ingest: fetch (%d in a row): %r' % (errors, e), file=sys.stderr)
                await asyncio.sleep(min(1.0, 0.1 * errors))
                continue
            for m in msgs:
                try:
                    self.take(m, 'durable')
                except Exception as e:      # noqa: BLE001 - one bad batch must not stop the feed
                    self.stats['bad_batches'] += 1
                    print('ingest: batch dropped: %r' % (e,), file=sys.stderr)
            self.ack(msgs)

    def ack(self, msgs):
        w = self.ing.writer
        if w is not None:        # behind the store's pending items: acked once committed
            w.put(None, None, ('js', msgs))
        else:
            for m in msgs:
                asyncio.get_running_loop().create_task(m.ack())

    def send_acks(self, msgs):
        for m in msgs:
            asyncio.get_running_loop().create_task(m.ack())

    async def _reconnected(self):
        self.stats['nats_reconnects'] += 1

    async def _error(self, e):
        print('ingest: nats: %r' % (e,), file=sys.stderr)

    async def run(self):
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig
        a = self.args
        servers = [u if '://' in u else 'nats://' + u for u in a.nats]
        self.nc = await nats.connect(servers=servers, dont_randomize=True, max_reconnect_attempts=-1,
                                     reconnect_time_wait=0.25, connect_timeout=2, ping_interval=5,
                                     max_outstanding_pings=2, name=a.client_id,
                                     reconnected_cb=self._reconnected, error_cb=self._error,
                                     pending_size=64 * 1024 * 1024)
        self.js = self.nc.jetstream(timeout=5)
        sites = a.sites.split(',')
        tasks = []
        end = time.monotonic() + a.nats_setup_s
        for site in sites:
            subj = natsbatch.subject(site)
            await self.nc.subscribe(subj, cb=self._live, pending_msgs_limit=1000000,
                                    pending_bytes_limit=1024 * 1024 * 1024)
            cfg = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=a.ack_wait_s,
                                 max_ack_pending=a.max_ack_pending, mem_storage=True)
            while True:
                try:
                    await natsbatch.ensure_stream(self.js)
                    sub = await self.js.pull_subscribe(subj, durable='%s-%s' % (a.client_id, site),
                                                       stream=natsbatch.STREAM, config=cfg,
                                                       pending_msgs_limit=1000000)
                    break
                except Exception as e:      # noqa: BLE001 - cluster still electing
                    if time.monotonic() > end:
                        raise
                    print('ingest: consumer %s: %r' % (site, e), file=sys.stderr)
                    await asyncio.sleep(0.5)
            tasks.append(asyncio.get_running_loop().create_task(self._pull(sub)))
        if a.ready_file:
            open(a.ready_file, 'w').close()
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            pass

    async def close(self):
        if self.nc is not None:
            try:
                await self.nc.flush(2)
            except Exception:               # noqa: BLE001 - closing anyway
                pass
            await self.nc.close()
