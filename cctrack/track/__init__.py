"""The tracking stage: per camera, frames -> detections -> Kalman tracks -> tracklets.

    cameras.py   track_cameras: all cameras read in lockstep, detected in shared batches, one tracker each
    tracker.py   Tracker: two-stage (high / low score) association of detections to Kalman tracks
    kalman.py    BoxKalman: the constant-velocity box filter (filterpy)

What leaves this stage is a list of cctrack.tracklets.Tracklet per camera (CameraTracks), with the crop
pixels of those that ended after the last checkpoint; the pipeline writes those crops and turns the
tracklets into the one cctrack.table.TrackletTable that every later stage reads.
"""

from cctrack.track.cameras import CameraTracks, track_cameras
from cctrack.track.tracker import Tracker, TrackerSettings

__all__ = ["CameraTracks", "Tracker", "TrackerSettings", "track_cameras"]
