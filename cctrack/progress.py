"""Progress of the long stages: a redrawn tqdm bar on a terminal, plain lines in a log file.

A redrawn bar writes carriage returns and cursor escapes; in a file (`cctrack run ... 2> log`) they pile
up into one unreadable line. When stderr is not a terminal, a line like `embed: 512/2048 crops (25%)`
is printed every LOG_INTERVAL_SECONDS and once at the end instead.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

LOG_INTERVAL_SECONDS = 10.0


class LogLines:
    """tqdm's `update` / `close` / `with` interface, writing one plain line per interval to stderr."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.done = 0
        self.started = time.monotonic()
        self.last_line = self.started
        self.closed = False

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last_line >= LOG_INTERVAL_SECONDS:
            self.last_line = now
            self._print(f"{self.done}/{self.total} {self.unit}s ({100 * self.done / max(self.total, 1):.0f}%)")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._print(f"{self.done}/{self.total} {self.unit}s in {time.monotonic() - self.started:.1f} s")

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _print(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=sys.stderr, flush=True)


def progress_bar(total: int, desc: str, unit: str, show: bool, position: int = 0) -> tqdm | LogLines:
    """A progress display with `update(n)` and `close()` (also a context manager); nothing when not `show`."""
    if show and not sys.stderr.isatty():
        return LogLines(total, desc, unit)
    return tqdm(total=total, desc=desc, unit=unit, position=position, leave=True, disable=not show)
