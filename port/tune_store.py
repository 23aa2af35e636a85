"""Tuner results on the board's flash: agent/autotune/store.py's records and reuse rules, written
with a temp file + rename (no os.open/fsync on MicroPython; LittleFS renames atomically). One
small file per board per finished run: a write per tune, not per step."""

import os

from agent.autotune import store


def _makedirs(path):
    cur = ''
    for part in path.split('/'):
        cur = cur + '/' + part if cur or path.startswith('/') else part
        if part:
            try:
                os.mkdir(cur)
            except OSError:
                pass


def flash_write(path, data):
    _makedirs(path.rsplit('/', 1)[0])
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.rename(tmp, path)


def save(results_dir, result, saved_at_s=None):
    return store.save(results_dir, result, saved_at_s, write=flash_write)


load_saved = store.load_saved
