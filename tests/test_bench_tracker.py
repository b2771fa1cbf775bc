"""bench.tracker tunes both trackers with one grid: each point must mean the same on both sides."""

import pytest

from bench.tracker import SharedSettings, bytetrack_defaults, grid_points
from cctrack.track.tracker import Tracker, TrackerSettings


def test_the_grid_holds_both_trackers_shipped_defaults():
    ours_default = SharedSettings(high_score=0.5, low_score=0.1, match_iou=0.2, lost_track_seconds=3.0, fuse_score=False)
    bytetrack_default = SharedSettings.from_bytetrack(bytetrack_defaults(), fps=10.0)  # the sample's fps: 30 frames
    assert ours_default.ours() == TrackerSettings()
    assert bytetrack_default == SharedSettings(high_score=0.25, low_score=0.1, match_iou=0.2, lost_track_seconds=3.0,
                                               fuse_score=True)
    assert bytetrack_default.bytetrack(fps=10.0) == bytetrack_defaults()
    assert ours_default in grid_points() and bytetrack_default in grid_points()


def test_a_point_sets_the_same_thresholds_on_both_trackers():
    point = SharedSettings(high_score=0.4, low_score=0.05, match_iou=0.3, lost_track_seconds=1.0, fuse_score=True)
    ours, theirs = point.ours(), point.bytetrack(fps=25.0)
    assert ours.high_score == ours.new_track_score == theirs["track_high_thresh"] == theirs["new_track_thresh"] == 0.4
    assert ours.low_score == theirs["track_low_thresh"] == 0.05
    assert 1.0 - theirs["match_thresh"] == pytest.approx(ours.match_iou)  # a cost limit against a least IoU
    assert theirs["track_buffer"] == Tracker(ours, fps=25.0).lost_track_frames == 25
    assert ours.fuse_score is theirs["fuse_score"] is True
