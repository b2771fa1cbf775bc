"""The embed progress moves per batch of the embedder, and off a terminal it is plain lines."""

from __future__ import annotations

import numpy as np

from cctrack import progress
from cctrack.embed import embed_tracklets
from reid import Embedder
from tests.conftest import read_sample_frames


def test_embedding_progress_is_one_plain_line_per_tracklet_off_a_terminal(monkeypatch, capsys):
    frame = read_sample_frames("cam_left", 1)[0]
    crops = [np.ascontiguousarray(frame[20 * i : 20 * i + 90, 30 * i : 30 * i + 40]) for i in range(10)]
    embedder = Embedder.imagenet_backbone("mobilenetv2", device="cpu", batch_size=4)
    monkeypatch.setattr(progress, "LOG_INTERVAL_SECONDS", 0.0)  # a line at every update
    embeddings = embed_tracklets([crops[:3], crops[3:]], embedder, show_progress=True)
    assert embeddings.descriptors.shape == (2, embedder.dim)
    lines = capsys.readouterr().err.splitlines()  # pytest's captured stderr is not a terminal
    assert lines[:2] == ["embed: 3/10 crops (30%)", "embed: 10/10 crops (100%)"]  # one embedder call per tracklet
    assert len(lines) == 3 and lines[2].startswith("embed: 10/10 crops in ")


def test_no_progress_writes_nothing(capsys):
    with progress.progress_bar(5, "video", "frame", show=False) as bar:
        bar.update(5)
    assert capsys.readouterr().err == ""
