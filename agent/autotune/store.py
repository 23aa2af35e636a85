"""Tune results on disk: one JSON file per board identity, written atomically.

write temp file -> flush + fsync -> rename over the old file -> fsync the directory, so a crash
at any point leaves either the old file or the new one, never a torn one. A result is reused at
boot only when the board identity, mode and target match (then verified, see tuner.py).
"""

import json
import os
import re

VERSION = 1


def _safe(board_id):
    return re.sub(r'[^A-Za-z0-9_.-]', '_', board_id)[:80] or 'board'


def path_for(results_dir, board_id):
    return '%s/tune-%s.json' % (str(results_dir).rstrip('/'), _safe(board_id))


def atomic_write(path, data_bytes, _crash_after=None):
    """Write bytes atomically. _crash_after (tests): raise after this step ('write', 'fsync')."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = '%s.tmp%d' % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        half = len(data_bytes) // 2
        os.write(fd, data_bytes[:half])
        if _crash_after == 'write':
            raise OSError('simulated crash mid-write')
        os.write(fd, data_bytes[half:])
        os.fsync(fd)
        if _crash_after == 'fsync':
            raise OSError('simulated crash before rename')
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def save(results_dir, result, saved_at_s=None, write=None):
    """Split a tuner result (tuner.Tuner.result()) into one file per board. Returns the paths.
    write(path, bytes): atomic_write here; the MicroPython port passes its flash writer."""
    write = write or atomic_write
    paths = []
    for b, bid in enumerate(result['board_ids']):
        rec = {'version': VERSION, 'board_id': bid, 'board': b, 'mode': result['mode'],
               'target': result['target'], 'profile': result.get('profile', ''),
               'board_mv': result['board_mv'][b], 'freqs_mhz': result['freqs'][b],
               'temps_c': result['temps_c'][b], 'err_est': result['err_est'][b],
               'rig': {'power_w': result['power_w'], 'good_ths': result['good_ths'],
                       'j_per_th': result['j_per_th'], 'mean_die_c': result['mean_die_c'],
                       'tune_s': result['tune_s'], 'curve': result['curve']},
               'saved_at_s': saved_at_s}
        p = path_for(results_dir, bid)
        write(p, (json.dumps(rec, sort_keys=True) + '\n').encode())
        paths.append(p)
    return paths


def load_board(results_dir, board_id):
    """The saved record of one board, or None (missing, unreadable or not ours)."""
    try:
        with open(path_for(results_dir, board_id)) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get('version') != VERSION or \
            rec.get('board_id') != board_id or not isinstance(rec.get('freqs_mhz'), list):
        return None
    return rec


def load_saved(results_dir, board_ids):
    """A tuner `saved` dict when every board has a record of the same tune, else None."""
    recs = [load_board(results_dir, bid) for bid in board_ids]
    if not recs or any(r is None for r in recs):
        return None
    first = recs[0]
    if any(r['mode'] != first['mode'] or r['target'] != first['target'] for r in recs):
        return None
    return {'board_ids': list(board_ids), 'mode': first['mode'], 'target': first['target'],
            'board_mv': [r['board_mv'] for r in recs], 'freqs': [r['freqs_mhz'] for r in recs],
            'profile': first.get('profile', ''), 'rig': first.get('rig', {})}
