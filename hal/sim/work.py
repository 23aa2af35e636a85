"""Simulated chips' work: take the host's real job frames and answer with nonces that are real
solutions (SHA-256d checked by the host), at a documented reduced difficulty.

A real chip reports a nonce when the header hash has >= 32+N leading zero bits (ticket mask
2^N). Finding one costs ~2^(32+N) hashes, far beyond a simulator, so simulated chips report at the
*rate* the ticket mask and the physics give (Poisson, unchanged) but grind only until the hash has
`check_bits` leading zero bits (default 8, ~256 SHA-256d per nonce). The simulator writes
`work_check_bits` into the ports file; an agent reading that file checks nonces against it, the
way it takes the time scale (docs/simulator.md, "Work"). Wrong nonces (at the chip's error
fraction, or always for a `bad-nonces` fault) are random nonces that fail that check.

Only the full job format (BM1362/66/68/70) is hashed; a midstate (BM1397) job is counted and
ignored (the header cannot be rebuilt from a midstate).
"""

import hashlib

from hal import codec
from hal.work import chipjobs, jobs

DEFAULT_CHECK_BITS = 8       # ~256 SHA-256d per nonce: the simulator's UART loop stays responsive
MAX_TRIES = 1 << 20        # never spin forever on a pathological check_bits


class SimWork:
    """Job frames seen on one chain and solutions for its chips."""

    def __init__(self, family, rng, check_bits=DEFAULT_CHECK_BITS):
        self.family = family
        self.rng = rng
        self.check_bits = check_bits
        self.fmt = chipjobs.FORMATS.get(family['name'])
        self.layout = family['nonce_layout']
        self.jobs = {}              # chip job id -> (version, header bytes 4..76)
        self.latest = None          # chip job id the chips hash now
        self.jobs_seen = 0
        self.unsupported = 0
        self.hashes = 0             # SHA-256d done grinding (CPU budget check)

    def on_job(self, frame):
        """A job command frame (55 AA 21 LEN payload CRC16, CRC already checked)."""
        payload = bytes(frame[4:-2])
        if self.fmt is None or self.fmt['format'] != 'full' or len(payload) != 82:
            self.unsupported += 1
            return False
        job_id = payload[0]
        body = (jobs.reverse_words(payload[46:78]) + jobs.reverse_words(payload[14:46])
                + payload[10:14] + payload[6:10])          # prev, merkle root, ntime, nbits
        self.jobs[job_id] = (int.from_bytes(payload[78:82], 'little'), body)
        self.latest = job_id
        self.jobs_seen += 1
        return True

    def has_job(self):
        return self.latest is not None

    def nonce_frame(self, chip_addr, roll_mask16, frame_len, bad=False):
        """One nonce response for the current job: a real solution, or a wrong nonce if bad."""
        src = self.solve(chip_addr, roll_mask16, bad)
        if src is None:
            return None
        return codec.nonce_response(src[0], src[1], src[2], src[3], frame_len)

    # -- the Chain's plug-in interface (job_sink / nonce_source) --------------------------------
    def job_sink(self, frame, t_s=None):
        """Chain.job_sink: a job frame the host sent (CRC checked by the framer)."""
        self.on_job(frame)

    def nonce_source(self, chip, rng=None):
        """Chain.nonce_source: (nonce, midstate, header, version) of one result of `chip`:
        a real solution of the current job, wrong with probability max(error fraction,
        `bad-nonces` fault share); random fields (no solution) before the first job."""
        rng = rng or self.rng
        roll16 = (chip.regs.get(0xA4, 0) & 0xFFFF) if chip.rolling else 0
        if self.latest is None:
            nonce, hdr = codec.encode_nonce_fields(self.layout, rng.getrandbits(32),
                                                   rng.randrange(16) * 8, rng.randrange(16),
                                                   chip.addr)
            return nonce, rng.randrange(4), hdr, rng.getrandbits(16) & roll16
        bad = rng.random() < max(chip.err(), chip.silicon.get('bad_nonce_frac', 0.0))
        return self.solve(chip.addr, roll16, bad)

    def solve(self, chip_addr, roll_mask16, bad=False):
        """(nonce, midstate, header, version) for the current job; see nonce_frame.

        One version per attempt of 256 nonces: the header's first 64 bytes are hashed once and
        copied (hashlib state), so a candidate costs the last block and the second SHA-256.
        """
        job_id = self.latest
        version0, body = self.jobs[job_id]
        head, tail = body[:60], body[60:]          # version(4) + head = the first 64 bytes
        rng = self.rng
        tries = 0
        while tries < MAX_TRIES:
            v16 = rng.getrandbits(16) & roll_mask16
            version = jobs.roll_version(version0, v16) if roll_mask16 else version0
            first = hashlib.sha256(version.to_bytes(4, 'little') + head)
            copy = first.copy
            # the low byte of the nonce word carries no chip/job field in any layout: sweep it
            base, hdr = codec.encode_nonce_fields(self.layout, rng.getrandbits(32), job_id,
                                                  rng.randrange(16), chip_addr)
            base &= 0xFFFFFF00
            for low in range(256):
                nonce = base | low
                h1 = copy()
                h1.update(tail + nonce.to_bytes(4, 'big'))
                h = hashlib.sha256(h1.digest()).digest()
                tries += 1
                # fast path: with 8+ bits the hash's last byte (its most significant) must be 0
                ok = (h[31] == 0 or self.check_bits < 8) and jobs.meets_bits(h, self.check_bits)
                if ok != bad:
                    self.hashes += tries
                    return nonce, rng.randrange(4), hdr, v16
        self.hashes += tries
        return None

    def get_status(self):
        return {'jobs': self.jobs_seen, 'unsupported_jobs': self.unsupported,
                'check_bits': self.check_bits, 'hashes': self.hashes}
