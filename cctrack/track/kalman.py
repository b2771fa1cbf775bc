"""Constant-velocity Kalman model of one person's box, built on filterpy's KalmanFilter.

State (8,): cx, cy (box centre, px), aspect (width / height), height (px), then the rate of change of
each of those four PER SECOND. Measurement (4,): cx, cy, aspect, height of a detection box.

Time is in seconds, not frames, so the same noise constants describe the same motion at 10 and at 30 fps:
the process noise is the continuous white-acceleration model integrated over the step (Bar-Shalom's
"continuous white noise acceleration"), whose accumulated uncertainty over one second does not depend on
how many frames that second is cut into.

Pixel noises scale with the box height, as in DeepSORT/ByteTrack: a person near the camera moves and
jitters more pixels than the same person far away. Aspect is a ratio, so its noises are absolute.
"""

from __future__ import annotations

import functools

import numpy as np
from filterpy.kalman import KalmanFilter

# Measurement noise (one standard deviation of a detection box vs the true box).
CENTRE_MEASUREMENT_STD = 0.05  # fraction of box height, px/px
HEIGHT_MEASUREMENT_STD = 0.05  # fraction of box height, px/px
ASPECT_MEASUREMENT_STD = 0.05  # absolute; a walking person's width/height swings with the stride

# Process noise: spectral density of the white acceleration, as one standard deviation.
CENTRE_ACCELERATION_STD = 0.5  # box heights per s^2 per sqrt(s): a walker (1 height ~ 1.7 m) turns or stops
HEIGHT_ACCELERATION_STD = 0.1  # box heights per s^2 per sqrt(s): size changes slowly (depth motion)
ASPECT_ACCELERATION_STD = 0.1  # per s^2 per sqrt(s)

# Uncertainty of a new track's unknown velocity: people walk up to about one body height per second.
INITIAL_CENTRE_SPEED_STD = 1.0  # box heights per second
INITIAL_HEIGHT_SPEED_STD = 0.2  # box heights per second
INITIAL_ASPECT_SPEED_STD = 0.1  # per second

STATE_SIZE = 8
MEASUREMENT_SIZE = 4


def xyxy_to_xyah(box_xyxy: np.ndarray) -> np.ndarray:
    """(..., 4) xyxy px -> (..., 4) centre x, centre y, width / height, height (px)."""
    box = np.asarray(box_xyxy, dtype=np.float64)
    width = box[..., 2] - box[..., 0]
    height = box[..., 3] - box[..., 1]
    centre_x = (box[..., 0] + box[..., 2]) / 2
    centre_y = (box[..., 1] + box[..., 3]) / 2
    return np.stack([centre_x, centre_y, width / height, height], axis=-1)


def xyah_to_xyxy(box_xyah: np.ndarray) -> np.ndarray:
    """(..., 4) centre x, centre y, width / height, height (px) -> (..., 4) xyxy px."""
    box = np.asarray(box_xyah, dtype=np.float64)
    height = box[..., 3]
    width = box[..., 2] * height
    return np.stack(
        [box[..., 0] - width / 2, box[..., 1] - height / 2, box[..., 0] + width / 2, box[..., 1] + height / 2],
        axis=-1,
    )


@functools.lru_cache(maxsize=8)
def _constant_velocity_step(seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(F, Q1) for a step of `seconds`: the transition, and the process noise for unit acceleration
    density, per quantity [[dt^3/3, dt^2/2], [dt^2/2, dt]]. One camera always steps by the same time."""
    transition = np.eye(STATE_SIZE)
    value = np.arange(MEASUREMENT_SIZE)
    rate = value + MEASUREMENT_SIZE
    transition[value, rate] = seconds
    unit_noise = np.zeros((STATE_SIZE, STATE_SIZE))
    unit_noise[value, value] = seconds**3 / 3
    unit_noise[value, rate] = unit_noise[rate, value] = seconds**2 / 2
    unit_noise[rate, rate] = seconds
    transition.flags.writeable = unit_noise.flags.writeable = False  # shared by every track
    return transition, unit_noise


class BoxKalman:
    """The motion of one tracked box: predict it forward in time, correct it with a detection."""

    def __init__(self, box_xyxy: np.ndarray):
        measurement = xyxy_to_xyah(box_xyxy)
        height = measurement[3]
        self.filter = KalmanFilter(dim_x=STATE_SIZE, dim_z=MEASUREMENT_SIZE)
        self.filter.H = np.eye(MEASUREMENT_SIZE, STATE_SIZE)
        self.filter.x = np.concatenate([measurement, np.zeros(MEASUREMENT_SIZE)]).reshape(STATE_SIZE, 1)
        value_std = 2 * self._measurement_std(height)
        rate_std = np.array(
            [INITIAL_CENTRE_SPEED_STD * height, INITIAL_CENTRE_SPEED_STD * height,
             INITIAL_ASPECT_SPEED_STD, INITIAL_HEIGHT_SPEED_STD * height]
        )
        self.filter.P = np.diag(np.concatenate([value_std, rate_std]) ** 2)

    @classmethod
    def from_state(cls, mean: np.ndarray, covariance: np.ndarray) -> BoxKalman:
        """A filter at a saved estimate: (8,) state and (8, 8) covariance, as `mean` and `covariance` give
        them. predict and update read nothing else, so the restored filter continues exactly."""
        restored = cls.__new__(cls)
        restored.filter = KalmanFilter(dim_x=STATE_SIZE, dim_z=MEASUREMENT_SIZE)
        restored.filter.H = np.eye(MEASUREMENT_SIZE, STATE_SIZE)
        restored.filter.x = np.array(mean, np.float64).reshape(STATE_SIZE, 1)
        restored.filter.P = np.array(covariance, np.float64).reshape(STATE_SIZE, STATE_SIZE)
        return restored

    @property
    def mean(self) -> np.ndarray:
        """(8,) float64 copy of the state estimate."""
        return self.filter.x[:, 0].copy()

    @property
    def covariance(self) -> np.ndarray:
        """(8, 8) float64 copy of the estimate's covariance."""
        return self.filter.P.copy()

    @staticmethod
    def _measurement_std(height: float) -> np.ndarray:
        return np.array(
            [CENTRE_MEASUREMENT_STD * height, CENTRE_MEASUREMENT_STD * height,
             ASPECT_MEASUREMENT_STD, HEIGHT_MEASUREMENT_STD * height]
        )

    @property
    def height(self) -> float:
        """Current box height estimate, px."""
        return float(self.filter.x[3, 0])

    @property
    def box_xyxy(self) -> np.ndarray:
        """(4,) float64 current box estimate, xyxy px."""
        return xyah_to_xyxy(self.filter.x[:MEASUREMENT_SIZE, 0])

    @property
    def velocity_px_per_second(self) -> np.ndarray:
        """(2,) estimated centre velocity (x, y), px per second."""
        return self.filter.x[4:6, 0].copy()

    def predict(self, seconds: float) -> None:
        """Move the estimate `seconds` forward under constant velocity."""
        transition, unit_noise = _constant_velocity_step(float(seconds))
        height = max(self.height, 1.0)
        acceleration_std = np.array(
            [CENTRE_ACCELERATION_STD * height, CENTRE_ACCELERATION_STD * height,
             ASPECT_ACCELERATION_STD, HEIGHT_ACCELERATION_STD * height]
        )
        # Quantity k's value and rate both carry density std_k^2: scale rows and columns by std.
        scale = np.concatenate([acceleration_std, acceleration_std])
        self.filter.predict(F=transition, Q=unit_noise * np.outer(scale, scale))
        # A box coasting without detections must not shrink to nothing or turn inside out.
        self.filter.x[2, 0] = max(self.filter.x[2, 0], 1e-3)
        self.filter.x[3, 0] = max(self.filter.x[3, 0], 1.0)

    def update(self, box_xyxy: np.ndarray) -> None:
        """Correct the estimate with a detection box (xyxy px, positive width and height)."""
        measurement = xyxy_to_xyah(box_xyxy)
        noise = np.diag(self._measurement_std(measurement[3]) ** 2)
        self.filter.update(measurement.reshape(MEASUREMENT_SIZE, 1), R=noise)

    def hold_size(self) -> None:
        """Stop extrapolating size and aspect changes (for a track that has lost its person):
        a size trend seen for a few frames is mostly noise and would blow the box up over seconds."""
        self.filter.x[6:8, 0] = 0.0
