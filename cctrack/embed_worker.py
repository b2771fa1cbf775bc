"""Embedding in the background: tracklets are embedded in a worker thread as their tracks end, while the
detector works on later frames, so that little is left to embed when the video ends.

The worker embeds what `cctrack run` writes and a re-link reads: each crop JPEG-encoded as in OUT_DIR/crops
and decoded again. Each tracklet is one embedder call of its own crops (cctrack.embed.embed_tracklets does
the same), so its embeddings are the same bits whether made here, at the end, in a resumed run or by a
re-link. The queue is bounded: when the worker falls behind, tracking waits for it, and memory stays flat.
"""

from __future__ import annotations

import queue
import threading

import cv2
import numpy as np

from cctrack.cache import encode_crop
from cctrack.errors import CctrackError
from cctrack.tracklets import Tracklet

MAX_WAITING_TRACKLETS = 64
_STOP = None


def stored_pixels(crop: np.ndarray) -> np.ndarray:
    """The crop as OUT_DIR/crops stores it and a re-link reads it back: JPEG-encoded, then decoded."""
    return cv2.imdecode(np.frombuffer(encode_crop(crop), np.uint8), cv2.IMREAD_COLOR)


class BackgroundEmbedding:
    """`submit` tracklets as they end; `finish` waits for the worker and gives each one's crop embeddings,
    by (camera, track id). An error in the worker is raised by the next `submit` or by `finish`."""

    def __init__(self, embedder, max_waiting: int = MAX_WAITING_TRACKLETS) -> None:
        self._embedder = embedder
        self._waiting: queue.Queue = queue.Queue(maxsize=max_waiting)
        self._embedded: dict[tuple[str, int], np.ndarray] = {}
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work, name="embed tracklets", daemon=True)
        self._thread.start()

    def submit(self, tracklet: Tracklet) -> None:
        self._raise_if_failed()
        if tracklet.crops:
            self._waiting.put(((tracklet.camera, tracklet.track_id), tracklet.crops))

    def finish(self) -> dict[tuple[str, int], np.ndarray]:
        self._waiting.put(_STOP)
        self._thread.join()
        self._raise_if_failed()
        return self._embedded

    def close(self) -> None:
        """Stop without waiting for the tracklets still queued (an interrupted or failed run)."""
        self._stopping.set()  # the worker drops what is queued, then returns
        self._thread.join()

    def _work(self) -> None:
        while True:
            try:
                item = self._waiting.get(timeout=0.2)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            if item is _STOP:
                return
            if self._error is not None or self._stopping.is_set():
                continue  # keep draining, so that a submit never blocks on a dead worker
            key, crops = item
            try:
                self._embedded[key] = np.asarray(self._embedder.embed([stored_pixels(crop) for crop in crops]), np.float32)
            except BaseException as error:  # handed to the main thread, which reports it
                self._error = error

    def _raise_if_failed(self) -> None:
        if self._error is None:
            return
        if isinstance(self._error, CctrackError):
            raise self._error
        raise CctrackError(f"embedding in the background failed: {type(self._error).__name__}: {self._error}") from self._error
