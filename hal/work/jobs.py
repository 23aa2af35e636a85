"""Stratum V1 jobs to block headers: coinbase, merkle root, header bytes, hashing, difficulty.

Byte orders (facts and sources in docs/protocol-notes.md, "Stratum and jobs"):
- notify prevhash: 8 words, each printed big-endian -> internal order = bytes swapped per word;
- merkle branches, coinbase parts, extranonce1/2: plain bytes, used as sent;
- version, nbits, ntime: big-endian hex -> little-endian in the header;
- block hash: SHA-256d of the 80-byte header, read as a little-endian 256-bit integer.
Pure and MicroPython-safe.
"""

import binascii
import hashlib

DIFF1_TARGET = 0xFFFF << 208      # difficulty 1 (pool difficulty unit)
ROLL_FIELD = 0x1FFFE000           # the 16 version bits a BM13xx chip rolls (bits 13..28)
_M32 = 0xFFFFFFFF


class JobError(ValueError):
    pass


def unhex(s, what='hex field'):
    if not isinstance(s, str) or len(s) % 2:
        raise JobError('%s: expected an even-length hex string, got %r' % (what, s))
    try:
        return binascii.unhexlify(s)
    except ValueError:
        raise JobError('%s: not hex: %r' % (what, s[:80]))


def tohex(b):
    return binascii.hexlify(bytes(b)).decode()


def sha256d(data):
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def swap_words(b):
    """Reverse the bytes inside every 4-byte word (Stratum prevhash <-> internal order)."""
    out = bytearray(len(b))
    for i in range(0, len(b), 4):
        out[i:i + 4] = bytes(reversed(b[i:i + 4]))
    return bytes(out)


def reverse_words(b):
    """Reverse the order of the 4-byte words, bytes inside each kept (chip job-frame order)."""
    out = bytearray()
    for i in range(len(b) - 4, -1, -4):
        out += b[i:i + 4]
    return bytes(out)


def _u32hex(s, what):
    b = unhex(s, what)
    if len(b) != 4:
        raise JobError('%s: expected 4 bytes, got %d' % (what, len(b)))
    return int.from_bytes(b, 'big')


def parse_notify(params):
    """mining.notify params -> job dict; JobError with the field name on anything malformed."""
    if not isinstance(params, (list, tuple)) or len(params) < 9:
        raise JobError('mining.notify needs 9 params, got %r' % (params,))
    branches = params[4]
    if not isinstance(branches, (list, tuple)):
        raise JobError('mining.notify merkle branch list is not a list')
    prev = unhex(params[1], 'prevhash')
    if len(prev) != 32:
        raise JobError('prevhash: expected 32 bytes, got %d' % len(prev))
    br = []
    for i, h in enumerate(branches):
        b = unhex(h, 'merkle branch %d' % i)
        if len(b) != 32:
            raise JobError('merkle branch %d: expected 32 bytes' % i)
        br.append(b)
    job_id = params[0]
    if not isinstance(job_id, str):
        job_id = str(job_id)   # some pools send numbers; submit echoes the text
    return {'job_id': job_id, 'prev': swap_words(prev),
            'coinb1': unhex(params[2], 'coinb1'), 'coinb2': unhex(params[3], 'coinb2'),
            'branches': br, 'version': _u32hex(params[5], 'version'),
            'nbits': _u32hex(params[6], 'nbits'), 'ntime': _u32hex(params[7], 'ntime'),
            'clean': bool(params[8])}


def extranonce2(counter, size):
    """Extranonce2 bytes for a counter: little-endian, `size` bytes (ESP-Miner's format)."""
    if size <= 0:
        return b''
    if size < 8 and counter >> (8 * size):
        raise JobError('extranonce2 counter %d does not fit in %d bytes' % (counter, size))
    return (counter & ((1 << (8 * size)) - 1)).to_bytes(size, 'little')


def coinbase(job, en1, en2):
    return job['coinb1'] + bytes(en1) + bytes(en2) + job['coinb2']


def merkle_root(cb_hash, branches):
    """Root (internal byte order) from the coinbase txid and the branch list."""
    h = cb_hash
    for b in branches:
        h = sha256d(h + b)
    return h


def build_work(job, en1, en2):
    """One unit of work: the job with its extranonce2, merkle root computed."""
    root = merkle_root(sha256d(coinbase(job, en1, en2)), job['branches'])
    return {'job': job, 'en2': bytes(en2), 'merkle_root': root, 'version': job['version'],
            'nbits': job['nbits'], 'ntime': job['ntime']}


def header(work, version, nonce4):
    """80-byte header; nonce4 = the 4 nonce bytes as they sit in the header (and on the wire)."""
    job = work['job']
    return ((version & _M32).to_bytes(4, 'little') + job['prev'] + work['merkle_root']
            + work['ntime'].to_bytes(4, 'little') + work['nbits'].to_bytes(4, 'little')
            + bytes(nonce4))


def hash_value(h):
    return int.from_bytes(h, 'little')


def display_hash(h):
    """Block hash as explorers print it (byte-reversed)."""
    return tohex(bytes(reversed(h)))


def difficulty(h):
    """Pool difficulty of a header hash (DIFF1 / hash); a zero hash reports 2**256."""
    v = hash_value(h)
    return DIFF1_TARGET / v if v else float(1 << 256)


def target_of(diff):
    """Share target for a (possibly fractional) pool difficulty."""
    if not diff or diff <= 0:
        raise JobError('difficulty must be > 0, got %r' % (diff,))
    scaled = int(diff * (1 << 32))
    if scaled <= 0:
        raise JobError('difficulty %r is too small' % (diff,))
    return (DIFF1_TARGET << 32) // scaled


def target_of_nbits(nbits):
    exp = nbits >> 24
    mant = nbits & 0x007FFFFF
    if exp <= 3:
        return mant >> (8 * (3 - exp))
    return mant << (8 * (exp - 3))


def meets_bits(h, zero_bits):
    """True when the hash has at least zero_bits leading zero bits (chip ticket check)."""
    return hash_value(h) < (1 << (256 - zero_bits))


def submit_params(worker, work, nonce4, version, version_mask):
    """mining.submit params: worker, job id, extranonce2, ntime, nonce, [version bits]."""
    p = [worker, work['job']['job_id'], tohex(work['en2']), '%08x' % work['ntime'],
         '%08x' % int.from_bytes(bytes(nonce4), 'little')]
    if version_mask:
        p.append('%08x' % (version & version_mask))
    return p


def roll_version(base, v16):
    """Full version from a chip's 16 rolled bits (bits 13..28; BM1366 and later)."""
    return (base & ~ROLL_FIELD & _M32) | ((v16 << 13) & ROLL_FIELD)


def increment_bitmask(value, mask):
    """Next version inside mask (the BM1397 midstate sequence): +1 at the mask's lowest bit,
    carries confined to the mask."""
    if not mask:
        return value
    low = mask & (-mask)
    bits = ((value & mask) | (~mask & _M32)) + low   # carries jump over bits outside the mask
    return ((value & ~mask) | (bits & mask)) & _M32


def job_space_s(hashrate_hs, version_bits):
    """Seconds until a chain hashing at hashrate_hs exhausts one job's nonce x version space."""
    if hashrate_hs <= 0:
        return 1e9
    return (1 << 32) * float(1 << version_bits) / hashrate_hs


def popcount(x):
    n = 0
    while x:
        x &= x - 1
        n += 1
    return n
