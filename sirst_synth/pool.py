"""The process pool: ordered results, workers that ignore Ctrl-C, a clean stop on interrupt."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sirst_synth.progress import Progress


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


class LanePool:
    """At most ``workers`` calls of ``fn(item, progress)`` at once, each in a fresh process and
    on its own progress lane (``progress.lane(i)``), results in the order they finish.

    The caller prepares an item only when a lane is free (``free_lane``), so shared work (data
    a later item needs) is done once, in this process, never by two workers at once. Workers
    are spawned, not forked: a process that has run multi-threaded torch cannot fork safely.
    With one worker every call runs here, in order, with ``progress`` itself.
    """

    def __init__(self, fn: Callable[[Any, Progress], Any], workers: int, progress: Progress):
        self.fn, self.workers, self.progress = fn, max(1, workers), progress
        self.done: list[Any] = []
        self.running: set[int] = set()  # busy lanes
        self.pool = self.manager = self.events = self.relay = None

    def __enter__(self) -> LanePool:
        if self.workers > 1:
            import queue
            import threading
            from multiprocessing.managers import SyncManager

            ctx = mp.get_context("spawn")
            guard = (_exit_with_parent, (os.getpid(),))  # every process here stops with this one
            self.manager = SyncManager(ctx=ctx)  # serves the progress queue
            self.manager.start(_quiet_worker, guard)
            self.events = self.manager.Queue()  # progress, from the workers
            self.results: queue.Queue = queue.Queue()  # (lane, result, error), from callbacks
            self.pool = ctx.Pool(self.workers, _quiet_worker, guard, maxtasksperchild=1)
            self.relay = threading.Thread(target=self._relay, daemon=True)
            self.relay.start()
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if self.pool is None:
            return
        if exc_type is None:
            self.pool.close()
        else:  # an error or Ctrl-C here: the running items stop with it
            self.pool.terminate()
        self.pool.join()
        self.events.put(None)
        self.relay.join()
        self.manager.shutdown()

    def submit(self, item: Any) -> None:
        """Start ``item`` on a free lane (call ``free_lane`` first)."""
        if self.pool is None:
            self.done.append(self.fn(item, self.progress))
            return
        lane = min(set(range(self.workers)) - self.running)
        self.running.add(lane)
        self.pool.apply_async(
            _on_lane,
            (self.fn, item, self.events, lane),
            callback=lambda result: self.results.put((lane, result, None)),
            error_callback=lambda error: self.results.put((lane, None, error)),
        )

    def free_lane(self) -> Iterator[Any]:
        """Wait until a lane is free; yield the results that finished meanwhile."""
        yield from self._collect(lambda: len(self.running) >= self.workers)

    def drain(self) -> Iterator[Any]:
        """Wait for every running item; yield the results as they finish."""
        yield from self._collect(lambda: bool(self.running))

    def _collect(self, busy: Callable[[], bool]) -> Iterator[Any]:
        while True:
            while self.done:
                yield self.done.pop(0)
            if not busy():
                return
            lane, result, error = self.results.get()
            self.running.discard(lane)
            if error is not None:
                raise error  # a worker's error, as it would have been raised here
            self.done.append(result)

    def _relay(self) -> None:
        """Forward the workers' progress events to their lanes (a thread of this process)."""
        while (event := self.events.get()) is not None:
            lane, method, args = event
            getattr(self.progress.lane(lane), method)(*args)


class _QueueProgress(Progress):
    """A worker's progress, sent to the parent under its lane."""

    def __init__(self, queue: Any, lane: int) -> None:
        self.queue, self.lane_no = queue, lane

    def start(self, description: str, total: int) -> None:
        self.queue.put((self.lane_no, "start", (description, total)))

    def advance(self, n: int = 1) -> None:
        self.queue.put((self.lane_no, "advance", (n,)))

    def stop(self) -> None:
        self.queue.put((self.lane_no, "stop", ()))


def _exit_with_parent(parent: int, every_s: float = 2.0) -> None:
    """A worker whose parent is gone (killed, out of memory) stops too, instead of training on
    unseen and holding its run's lock."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _on_lane(fn: Callable[[Any, Progress], Any], item: Any, queue: Any, lane: int) -> Any:
    return fn(item, _QueueProgress(queue, lane))
