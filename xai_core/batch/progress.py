"""Progress of a batch job: a live bar on a terminal, periodic log lines elsewhere (CI, pod logs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class Progress:
    """``update(rows)`` after each shard; ``close()`` prints the summary.

    On a terminal (stderr is a TTY) the bar is redrawn at most every 0.2 s with images/s, the
    ETA and the devices in use; otherwise a plain line is logged every ``interval`` seconds.
    """

    def __init__(self, total: int, devices: int, log: Callable[[str], None], interval: float = 10.0) -> None:
        self.total, self.devices, self.log, self.interval = total, devices, log, interval
        self.done, self.start = 0, time.perf_counter()
        self.last = self.start
        self.tty = sys.stderr.isatty()

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        return (f"{self.done}/{self.total} images, {rate:.1f} images/s, ETA {eta:.0f} s, "
                f"{self.devices} device{'s' if self.devices > 1 else ''}")

    def update(self, rows: int) -> None:
        self.done += rows
        now = time.perf_counter()
        if self.tty and (now - self.last >= 0.2 or self.done == self.total):
            filled = 30 * self.done // max(self.total, 1)
            sys.stderr.write(f"\rattribute [{'#' * filled}{'-' * (30 - filled)}] {self._line()}   ")
            sys.stderr.flush()
            self.last = now
        elif not self.tty and now - self.last >= self.interval:
            self.log(f"attribute: {self._line()}")
            self.last = now

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
        elapsed = time.perf_counter() - self.start
        self.log(f"attribute: done, {self.done} images in {elapsed:.1f} s "
                 f"({self.done / elapsed if elapsed > 0 else 0:.1f} images/s) on {self.devices} device(s)")
