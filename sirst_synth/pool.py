"""The process pool: ordered results, workers that ignore Ctrl-C, a clean stop on interrupt."""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def _quiet_worker(init: Callable[..., None] | None, args: tuple) -> None:
    # The parent handles Ctrl-C and terminates the pool; workers must not print tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if init is not None:
        init(*args)


def ordered_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    workers: int,
    init: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> Iterator[Any]:
    """``map(fn, items)`` in order, in ``workers`` processes (in-process for 1)."""
    if workers <= 1:
        if init is not None:
            init(*initargs)
        for item in items:
            yield fn(item)
        return
    ctx = mp.get_context("fork")
    pool = ctx.Pool(workers, initializer=_quiet_worker, initargs=(init, initargs))
    try:
        yield from pool.imap(fn, items, chunksize=1)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
