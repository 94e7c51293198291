"""A line now and then from a stage that is still working, where one step of it can run for
minutes without a word (an evaluation batch of a 10,000-component prior, a first epoch that
compiles): what `dvc repro` shows must say it is not stuck."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

PROGRESS_SECONDS = 30  # no stage stays silent longer than about this


class Heartbeat:
    """Within its block, a thread prints `status()` and the seconds since the block began once
    nothing was said for `every_seconds`; the stage calls `said()` when it prints a line of its own,
    so that the heartbeat speaks only into a silence."""

    def __init__(self, status: Callable[[], str], every_seconds: float = PROGRESS_SECONDS):
        self.status, self.every_seconds = status, every_seconds
        self._stop = threading.Event()

    def said(self) -> None:
        self.last = time.perf_counter()

    def start(self) -> Heartbeat:
        self.begin = self.last = time.perf_counter()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.every_seconds)):
            now = time.perf_counter()
            if now - self.last >= self.every_seconds:
                print(f"{self.status()} ({now - self.begin:.0f} s so far)", flush=True)
                self.last = now
