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
