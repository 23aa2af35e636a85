"""Chip job frames per family, chip job ids, and nonces checked back against their job.

Formats (facts in docs/protocol-notes.md, "Stratum and jobs"):
- 'full' (BM1362/66/68/70: the chip computes midstates and rolls the version itself):
  job_id, 1, start_nonce LE, nbits LE, ntime LE, merkle root (words reversed),
  prev hash (words reversed), version LE.
- 'midstate' (BM1397): job_id, n, start_nonce LE, nbits LE, ntime LE, merkle root's last word,
  then n midstates (one per version: the SHA-256 state after the first 64 bytes, its
  eight big-endian words in reverse order).
Chip job ids step by `id_step` modulo 128; a nonce names its job in the result-header byte
(`result_mask`, then shifted right by `result_shift`). Pure and MicroPython-safe.
"""

from hal import codec
from hal.work import jobs
from hal.work.sha256 import midstate

# Family -> job format (data, so no code branches on chip type).
FORMATS = {
    'BM1397': {'format': 'midstate', 'id_step': 4, 'result_mask': 0xFC, 'result_shift': 0,
               'midstate_mask': 0x03},
    'BM1362': {'format': 'full', 'id_step': 8, 'result_mask': 0xF8, 'result_shift': 0,
               'midstate_mask': 0},                       # ASSUMED as BM1366
    'BM1366': {'format': 'full', 'id_step': 8, 'result_mask': 0xF8, 'result_shift': 0,
               'midstate_mask': 0},
    'BM1368': {'format': 'full', 'id_step': 24, 'result_mask': 0xF0, 'result_shift': 1,
               'midstate_mask': 0},
    'BM1370': {'format': 'full', 'id_step': 24, 'result_mask': 0xF0, 'result_shift': 1,
               'midstate_mask': 0},
}


def job_format(family_name):
    fmt = FORMATS.get(str(family_name).upper())
    if fmt is None:
        raise jobs.JobError('no job format for chip family %r (known: %s)'
                            % (family_name, ', '.join(sorted(FORMATS))))
    return fmt


def _full_payload(work, job_id, start_nonce):
    return (bytes([job_id & 0xFF, 1]) + start_nonce.to_bytes(4, 'little')
            + work['nbits'].to_bytes(4, 'little') + work['ntime'].to_bytes(4, 'little')
            + jobs.reverse_words(work['merkle_root']) + jobs.reverse_words(work['job']['prev'])
            + work['version'].to_bytes(4, 'little'))


def midstate_versions(version, version_mask, count):
    out = [version]
    for _ in range(count - 1):
        out.append(jobs.increment_bitmask(out[-1], version_mask))
    return out


def _midstate_payload(work, job_id, start_nonce, version_mask):
    n = 4 if version_mask else 1
    head = (bytes([job_id & 0xFF, n]) + start_nonce.to_bytes(4, 'little')
            + work['nbits'].to_bytes(4, 'little') + work['ntime'].to_bytes(4, 'little')
            + work['merkle_root'][28:32])
    first = work['job']['prev'] + work['merkle_root'][:28]
    out = bytearray(head)
    for v in midstate_versions(work['version'], version_mask, n):
        out += jobs.reverse_words(midstate(v.to_bytes(4, 'little') + first))
    return bytes(out)


def job_frame(family_name, work, job_id, version_mask=0, start_nonce=0):
    """The whole job command frame (55 AA 21 ... CRC16) for one chip family."""
    fmt = job_format(family_name)
    if fmt['format'] == 'midstate':
        return codec.job(_midstate_payload(work, job_id, start_nonce, version_mask))
    return codec.job(_full_payload(work, job_id, start_nonce))


def result_job_id(fmt, result_header):
    return (result_header & fmt['result_mask']) >> fmt['result_shift']


def nonce_bytes(decoded):
    """The nonce's 4 bytes as they sit in the header (the frame's bytes 2..5)."""
    return (decoded['nonce'] & 0xFFFFFFFF).to_bytes(4, 'big')


def rolled_version(fmt, work, decoded, version_mask):
    """The version the chip hashed: from its 16 rolled bits (full format) or from the midstate
    index in the result header (midstate format)."""
    if fmt['format'] == 'midstate':
        idx = decoded['header'] & fmt['midstate_mask']
        return midstate_versions(work['version'], version_mask, idx + 1)[idx]
    v16 = decoded.get('version')
    if v16 is None:
        return work['version']
    return jobs.roll_version(work['version'], v16)


class JobSlots:
    """Chip job ids of one chain: ids step per family modulo 128; a slot lives until reused
    or until clear() (clean_jobs / new pool). A nonce naming an empty slot is stale."""

    def __init__(self, family_name):
        self.fmt = job_format(family_name)
        self.family = str(family_name).upper()
        self.slots = {}
        self._id = 0

    def put(self, work):
        self._id = (self._id + self.fmt['id_step']) % 128
        self.slots[self._id] = work
        return self._id

    def get(self, job_id):
        return self.slots.get(job_id)

    def clear(self):
        self.slots = {}

    def lookup(self, decoded):
        """(chip job id, work or None) for a decoded nonce frame."""
        jid = result_job_id(self.fmt, decoded['header'])
        return jid, self.slots.get(jid)


def check_nonce(fmt, work, decoded, version_mask, check_bits):
    """Rebuild the header the chip hashed and SHA-256d it.

    Returns (ok, hash, version, nonce4): ok when the hash has check_bits leading zero bits.
    """
    n4 = nonce_bytes(decoded)
    version = rolled_version(fmt, work, decoded, version_mask)
    h = jobs.sha256d(jobs.header(work, version, n4))
    return jobs.meets_bits(h, check_bits), h, version, n4
