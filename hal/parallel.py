"""run_parallel: one callable per board, in threads when there is more than one (MicroPython-safe:
a one-board rig such as a Bitaxe runs inline and never imports threading)."""


def run_parallel(fns):
    """Run callables; return their results in order, re-raise the first error."""
    if len(fns) <= 1:
        return [fn() for fn in fns]
    import threading
    results = [None] * len(fns)
    errors = [None] * len(fns)

    def wrap(i):
        try:
            results[i] = fns[i]()
        except BaseException as exc:    # reported to the caller below
            errors[i] = exc

    threads = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        if e is not None:
            raise e
    return results


class NoLock:
    """A lock's context-manager face for code that runs on one thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def lock_for(n):
    """The lock that state touched from run_parallel's callables needs: a real one when n
    callables run in threads, NoLock when they run inline (one board)."""
    if n <= 1:
        return NoLock()
    import threading
    return threading.Lock()
