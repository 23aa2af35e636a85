"""Robustness of the streaming framers: ResponseFramer, CommandFramer, board_protocol.Framer.

Random bytes, truncated frames, frames split at every boundary and frames embedded in garbage:
never raise, recover every valid frame after garbage, count what was dropped.
"""

from hypothesis import assume, given, settings, strategies as st

from hal import board_protocol as bp, codec
from hal.framer import CommandFramer, ResponseFramer

u8 = st.integers(0, 255)
u32 = st.integers(0, 0xFFFFFFFF)


def resp_frames(flen):
    reg = st.builds(lambda v, a, r: codec.reg_response(v, a, r, flen), u32, u8, u8)
    nonce = st.builds(lambda n, m, h, v: codec.nonce_response(n, m, h, v, flen), u32, u8, u8,
                      st.integers(0, 0xFFFF))
    return st.one_of(reg, nonce)


cmd_frames = st.one_of(
    st.builds(lambda r, a, b: codec.read_reg(r, a, b), u8, u8, st.booleans()),
    st.builds(lambda r, v, a, b: codec.write_reg(r, v, a, b), u8, u32, u8, st.booleans()),
    st.builds(codec.set_address, u8),
    st.just(codec.chain_inactive()),
    st.builds(codec.job, st.binary(min_size=1, max_size=60)),
)

board_frames = st.builds(lambda s, c, p: bp.encode(s, c, p), u8, u8, st.binary(max_size=40))

# Garbage that cannot contain a preamble of the stream it is fed into.
def garbage(avoid):
    return st.binary(max_size=40).filter(lambda b: avoid not in b and not b.endswith(avoid[:1]))


def feed_chunks(framer, data, cuts):
    out = []
    prev = 0
    for c in sorted(set(cuts)) + [len(data)]:
        c = min(c, len(data))
        out += framer.feed(data[prev:c])
        prev = max(prev, c)
    return out


@settings(max_examples=150)
@given(data=st.binary(max_size=400), flen=st.sampled_from([9, 11]))
def test_response_framer_random_bytes_never_raise(data, flen):
    f = ResponseFramer(flen)
    for frame in f.feed(data):
        assert len(frame) == flen and codec.response_crc_ok(frame)
    s = f.stats()
    assert s['dropped_bytes'] + s['buffered'] + s['frames'] * flen == len(data)


@settings(max_examples=150)
@given(flen=st.sampled_from([9, 11]), data=st.data())
def test_response_framer_recovers_frames_after_garbage(flen, data):
    frames = data.draw(st.lists(resp_frames(flen), min_size=1, max_size=8))
    junk = data.draw(st.lists(garbage(b'\xaa\x55'), min_size=len(frames), max_size=len(frames)))
    stream = b''.join(j + fr for j, fr in zip(junk, frames))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    f = ResponseFramer(flen)
    got = feed_chunks(f, stream, cuts)
    assert got == frames
    assert f.dropped_bytes == sum(len(j) for j in junk)


@given(frame=resp_frames(11))
def test_response_frame_split_at_every_boundary(frame):
    for cut in range(len(frame) + 1):
        f = ResponseFramer(11)
        assert f.feed(frame[:cut]) + f.feed(frame[cut:]) == [frame]


@given(frame=resp_frames(9), cut=st.integers(1, 8))
def test_truncated_response_then_good_frame(frame, cut):
    good = codec.reg_response(0x13680000, 2, 0, 9)
    stream = frame[:cut] + good
    # A 5-bit CRC passes 1 in 32 random windows: a truncated frame plus the head of the next
    # one can look valid and swallow it. That is the protocol's limit, not the framer's.
    assume(not any(codec.response_crc_ok(stream[i:i + 9]) for i in range(cut)
                   if stream[i:i + 2] == b'\xaa\x55'))
    f = ResponseFramer(9)
    got = f.feed(stream)
    assert got == [good]
    assert f.dropped_bytes == cut


def test_corrupt_response_counted_and_next_frame_recovered():
    good = codec.reg_response(0x12345678, 4, 0x8C, 9)
    bad = bytearray(good)
    bad[4] ^= 0x40
    f = ResponseFramer(9)
    assert f.feed(bytes(bad) + good) == [good]
    assert f.crc_errors >= 1 and f.dropped_bytes == 9


@settings(max_examples=150)
@given(data=st.binary(max_size=400))
def test_command_framer_random_bytes_never_raise(data):
    f = CommandFramer()
    for frame in f.feed(data):
        assert codec.decode_command(frame)['crc_ok']


@settings(max_examples=150)
@given(data=st.data())
def test_command_framer_recovers_frames_after_garbage(data):
    frames = data.draw(st.lists(cmd_frames, min_size=1, max_size=8))
    junk = data.draw(st.lists(garbage(b'\x55\xaa'), min_size=len(frames), max_size=len(frames)))
    stream = b''.join(j + fr for j, fr in zip(junk, frames))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    f = CommandFramer()
    assert feed_chunks(f, stream, cuts) == frames
    assert f.dropped_bytes == sum(len(j) for j in junk)


@given(frame=cmd_frames)
def test_command_frame_split_at_every_boundary(frame):
    for cut in range(len(frame) + 1):
        f = CommandFramer()
        assert f.feed(frame[:cut]) + f.feed(frame[cut:]) == [frame]


@given(frame=cmd_frames, cut=st.integers(1, 10))
def test_truncated_command_then_good_frame(frame, cut):
    good = codec.read_reg(0, 0, True)
    cut = min(cut, len(frame) - 1)
    f = CommandFramer()
    # A truncated job header may announce up to 255 bytes: the framer waits for them, then
    # finds the CRC wrong and resynchronises, so the good frame comes out once traffic follows.
    follow = [codec.write_reg(0x8C, i, 2 * i) for i in range(30)]
    got = f.feed(frame[:cut] + good + b''.join(follow))
    # (CRC5 false match on the truncated head: protocol limit, see the response test.)
    assume(all(g == good or g in follow for g in got))
    assert got[-len(follow):] == follow
    assert good in got


@settings(max_examples=150)
@given(data=st.binary(max_size=400))
def test_board_framer_random_bytes_never_raise(data):
    f = bp.Framer()
    frames = f.feed(data)
    # Every byte is accounted for: in a frame (7 bytes + payload), dropped, or still buffered.
    assert sum(7 + len(p) for _, _, p in frames) + f.dropped_bytes + len(f.buf) == len(data)


@settings(max_examples=150)
@given(data=st.data())
def test_board_framer_recovers_frames_after_garbage(data):
    frames = data.draw(st.lists(board_frames, min_size=1, max_size=6))
    junk = data.draw(st.lists(garbage(b'\xb5\x5b'), min_size=len(frames), max_size=len(frames)))
    stream = b''.join(j + fr for j, fr in zip(junk, frames))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    f = bp.Framer()
    got = feed_chunks(f, stream, cuts)
    assert got == [bp.decode(fr) for fr in frames]
    assert f.dropped_bytes == sum(len(j) for j in junk)


@given(frame=board_frames)
def test_board_frame_split_at_every_boundary(frame):
    for cut in range(len(frame) + 1):
        f = bp.Framer()
        assert f.feed(frame[:cut]) + f.feed(frame[cut:]) == [bp.decode(frame)]


def test_board_frame_bad_crc_dropped_then_recovered():
    good = bp.encode(7, bp.GET_INFO)
    bad = bytearray(bp.encode(8, bp.GET_FANS, b'\x01'))
    bad[-1] ^= 1
    f = bp.Framer()
    assert f.feed(bytes(bad) + good) == [bp.decode(good)]
    assert f.dropped_bytes == len(bad)
