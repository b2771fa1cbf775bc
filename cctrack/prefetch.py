"""Frames decoded ahead in a reader thread, one per camera, through a bounded queue.

OpenCV decodes without holding the GIL, so a camera's next frames are decoded while the detector runs on
the current ones; the queue's bound keeps memory flat on long videos. Items arrive in order, a reader's
error is raised in the consumer at the point the failed frame would have arrived, and `close` (or leaving
the `with` block, or a Ctrl-C in the consumer) stops the thread and releases the video.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")

_END = object()  # put after the last item
FRAMES_AHEAD = 16  # per camera: about one detector batch of every camera, a few MB at 1080p


class Prefetched(Generic[Item]):
    """Iterate `source` (a generator) in a daemon thread, at most `ahead` items in front of the consumer."""

    def __init__(self, source: Iterator[Item], ahead: int = FRAMES_AHEAD, name: str = "reader") -> None:
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, ahead))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for item in self._source:
                if not self._put(("item", item)):
                    return
            self._put(("end", _END))
        except BaseException as error:  # handed to the consumer, raised there
            self._put(("error", error))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()  # runs the generator's finally: the video capture is released in this thread

    def _put(self, entry: tuple) -> bool:
        """Wait for room, but give up when the consumer has closed: False."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Prefetched[Item]:
        return self

    def __next__(self) -> Item:
        kind, value = self._queue.get()
        if kind == "item":
            return value
        self._stop.set()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop reading (the thread ends within about 0.1 s) and wait for it."""
        self._stop.set()
        while True:  # unblock a reader waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5.0)

    def __enter__(self) -> Prefetched[Item]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
