"""A colour-histogram descriptor: the classic appearance baseline that re-id models are measured against.

Upper and lower halves of the crop each give a hue x saturation x value histogram; square roots of the
normalised counts (the Hellinger map) make cosine distance behave like the Bhattacharyya distance.
It knows nothing but colour, so it fails exactly when people change clothes.
"""

from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np

HSV_BINS = (8, 4, 4)  # hue, saturation, value
CROP_SIZE = (128, 64)  # (height, width) pixels the crop is resized to first


class ColourHistogramEmbedder:
    description = f"colour histogram baseline (HSV {HSV_BINS[0]}x{HSV_BINS[1]}x{HSV_BINS[2]}, upper/lower halves)"
    weights_path = None
    dim = 2 * HSV_BINS[0] * HSV_BINS[1] * HSV_BINS[2]
    calibration = None  # set by cctrack.embed.load_embedder

    def embed(self, crops: Sequence[np.ndarray], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(N, dim) float32, L2-normalised, for BGR uint8 crops; progress(1) after each crop."""
        rows = np.zeros((len(crops), self.dim), np.float32)
        for row, crop in enumerate(crops):
            hsv = cv2.cvtColor(cv2.resize(crop, CROP_SIZE[::-1], interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2HSV)
            half = CROP_SIZE[0] // 2
            parts = [
                cv2.calcHist([part], [0, 1, 2], None, list(HSV_BINS), [0, 180, 0, 256, 0, 256]).ravel()
                for part in (hsv[:half], hsv[half:])
            ]
            histogram = np.sqrt(np.concatenate([p / max(p.sum(), 1.0) for p in parts]))
            rows[row] = histogram / max(np.linalg.norm(histogram), 1e-12)
            if progress is not None:
                progress(1)
        return rows
