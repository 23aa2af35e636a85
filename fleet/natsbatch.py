"""Batches of MQTT messages carried over NATS between a site uplink and the consumers.

One NATS message = one batch of a site's MQTT messages: repeated [u16 topic length][u32 payload
length][u8 retain][topic][payload], published on `hpd.<site>` with a `Nats-Msg-Id` header that
names the batch (uplink run id + counter). The subject is captured by the JetStream stream `HP`
(R3, file storage, the id de-duplicates a batch sent twice within the duplicate window) and is
also a plain NATS subject: a core subscriber on `hpd.<site>` gets the batch as it is published,
without waiting for the stream's Raft group (the live path); a durable pull consumer gets it from
the stream (the lossless path). Consumers drop a batch whose id they have already taken.
"""

import collections
import struct

STREAM = 'HP'
SUBJECT_PREFIX = 'hpd.'
_HEAD = struct.Struct('>HIB')


def subject(site):
    return SUBJECT_PREFIX + site


def encode(entries):
    """[(topic str, payload bytes, retain bool)] -> bytes."""
    parts = []
    for topic, payload, retain in entries:
        t = topic.encode()
        parts.append(_HEAD.pack(len(t), len(payload), 1 if retain else 0))
        parts.append(t)
        parts.append(payload)
    return b''.join(parts)


def decode(data):
    """bytes -> [(topic, payload, retain)]; ValueError on a truncated batch."""
    out = []
    pos, end = 0, len(data)
    view = memoryview(data)
    while pos < end:
        if pos + _HEAD.size > end:
            raise ValueError('truncated batch header at %d' % pos)
        tl, pl, retain = _HEAD.unpack_from(data, pos)
        pos += _HEAD.size
        if pos + tl + pl > end:
            raise ValueError('truncated batch entry at %d' % pos)
        topic = bytes(view[pos:pos + tl]).decode()
        pos += tl
        out.append((topic, bytes(view[pos:pos + pl]), bool(retain)))
        pos += pl
    return out


def stream_config(replicas=3, max_age_s=24 * 3600, duplicate_window_s=120):
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
    return StreamConfig(name=STREAM, subjects=[SUBJECT_PREFIX + '>'], num_replicas=replicas,
                        storage=StorageType.FILE, retention=RetentionPolicy.LIMITS,
                        discard=DiscardPolicy.OLD, max_age=max_age_s,
                        duplicate_window=duplicate_window_s)


async def ensure_stream(js, replicas=3, max_age_s=24 * 3600):
    """Create the stream if it is missing (idempotent; several uplinks may race)."""
    from nats.js.errors import BadRequestError, NotFoundError
    try:
        await js.stream_info(STREAM)
        return
    except NotFoundError:
        pass
    try:
        await js.add_stream(stream_config(replicas, max_age_s))
    except BadRequestError:      # created meanwhile by another uplink
        await js.stream_info(STREAM)


class SeenIds:
    """The last `keep` batch ids taken (a batch comes live, then again from the stream)."""

    def __init__(self, keep=200000):
        self.keep = keep
        self.ids = collections.OrderedDict()

    def add(self, bid):
        """True if new."""
        if bid in self.ids:
            return False
        self.ids[bid] = None
        if len(self.ids) > self.keep:
            self.ids.popitem(last=False)
        return True
