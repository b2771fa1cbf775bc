"""A person's corrections (same / different / alone) inside the linker, and the files that hold them."""

from __future__ import annotations

import numpy as np
import pytest

from cctrack.errors import CctrackError
from cctrack.link import LinkSettings, link_tracklets
from cctrack.link.corrections import Corrections, load_corrections, resolve_corrections
from tests.test_link import make_table, partition, same_person, unit

CAMERAS = ["cam_left", "cam_right"]
LOOSE = LinkSettings(center_per_camera=False, distance_threshold=2.0)  # every allowed pair merges
TIGHT = LinkSettings(center_per_camera=False, distance_threshold=1e-6)  # nothing merges on its own


def corrected(table, embeddings, settings, **entries):
    """link_tracklets with corrections written as in corrections.yaml: same=[("cam_left:1", "cam_right:1")]."""
    def key(text):
        camera, track = text.split(":")
        return camera, int(track)

    corrections = Corrections(
        same=tuple((key(a), key(b)) for a, b in entries.get("same", [])),
        different=tuple((key(a), key(b)) for a, b in entries.get("different", [])),
        alone=tuple(key(text) for text in entries.get("alone", [])),
    )
    return link_tracklets(table, embeddings, settings, constraints=resolve_corrections(corrections, table))


# Rows: cam_left:1, cam_left:2 (later), cam_right:1, cam_right:2 (later); no two overlap in a camera.
TABLE = make_table(CAMERAS, [(0, 0, 50), (0, 100, 150), (1, 20, 60), (1, 120, 160)])


def test_same_joins_tracklets_the_model_keeps_apart_and_says_a_person_did():
    embeddings = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    assert len(set(link_tracklets(TABLE, embeddings, TIGHT).identity.tolist())) == 4
    result = corrected(TABLE, embeddings, TIGHT, same=[("cam_left:1", "cam_right:1")])
    assert partition(result.identity) == {frozenset({0, 2}), frozenset({1}), frozenset({3})}
    [link] = result.links
    assert (link.tracklet_a, link.tracklet_b, link.source, link.confidence) == (0, 2, "person", 1.0)
    assert link.similarity == pytest.approx(0.0, abs=1e-6)


def test_same_joins_tracklets_that_are_no_candidates_of_each_other():
    # Outside the time window no pair is ever compared; a person's word still joins them.
    settings = LinkSettings(center_per_camera=False, distance_threshold=0.3, max_gap_seconds=1.0)
    table = make_table(CAMERAS, [(0, 0, 10), (1, 5000, 5010)])
    result = corrected(table, unit([[1, 0], [0, 1]]), settings, same=[("cam_left:1", "cam_right:1")])
    assert same_person(result, 0, 1) and [link.source for link in result.links] == ["person"]


def test_different_and_alone_split_what_the_model_would_merge():
    embeddings = unit([[1, 0]] * 4)
    assert len(set(link_tracklets(TABLE, embeddings, LOOSE).identity.tolist())) == 1
    result = corrected(TABLE, embeddings, LOOSE, different=[("cam_left:1", "cam_right:1")])
    assert not same_person(result, 0, 2)
    assert all(link.source == "model" for link in result.links)
    result = corrected(TABLE, embeddings, LOOSE, alone=["cam_right:2"])
    assert partition(result.identity) == {frozenset({0, 1, 2}), frozenset({3})}


def test_cannot_link_holds_for_the_clusters_around_the_pair():
    # Merging {cam_left:1, cam_left:2} with {cam_right:1} would put the different pair in one person.
    embeddings = unit([[1, 0]] * 4)
    result = corrected(TABLE, embeddings, LOOSE, same=[("cam_left:1", "cam_left:2")],
                       different=[("cam_left:2", "cam_right:1")])
    assert same_person(result, 0, 1) and not same_person(result, 0, 2) and not same_person(result, 1, 2)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [1e-6, 0.3, 0.8, 2.0])
def test_no_threshold_breaks_a_correction(seed, threshold):
    rng = np.random.default_rng(seed)
    count = 30
    camera = rng.integers(0, 3, count)
    first = rng.integers(0, 2000, count)
    table = make_table(["a", "b", "c"], list(zip(camera, first, first + rng.integers(5, 200, count))))
    keys = table.keys
    embeddings = unit(rng.normal(size=(count, 6)))
    overlapping = {(i, j) for i in range(count) for j in range(count)
                   if camera[i] == camera[j] and first[j] <= table.last_frame[i] and first[i] <= table.last_frame[j]}
    # Same pairs between tracklets that never overlap in a camera, one hop each, so no chain can join two
    # overlapping ones; different pairs and alone tracklets outside them.
    rows = rng.permutation(count)
    same = [(rows[k], rows[k + 1]) for k in (0, 3, 6) if (rows[k], rows[k + 1]) not in overlapping]
    different = [(rows[k], rows[k + 1]) for k in (10, 12, 14)]
    alone = [int(rows[20]), int(rows[21])]
    corrections = Corrections(same=tuple((keys[a], keys[b]) for a, b in same),
                              different=tuple((keys[a], keys[b]) for a, b in different),
                              alone=tuple(keys[row] for row in alone))
    settings = LinkSettings(center_per_camera=False, distance_threshold=threshold)
    result = link_tracklets(table, embeddings, settings, constraints=resolve_corrections(corrections, table))
    assert all(same_person(result, a, b) for a, b in same)
    assert not any(same_person(result, a, b) for a, b in different)
    assert all((result.identity == result.identity[row]).sum() == 1 for row in alone)
    assert not any(same_person(result, i, j) for i, j in overlapping if i != j)
    assert len(result.links) == count - len(set(result.identity.tolist()))
    person = {frozenset((link.tracklet_a, link.tracklet_b)) for link in result.links if link.source == "person"}
    assert person == {frozenset((int(a), int(b))) for a, b in same}


# Rows: cam_left:1 and cam_left:2 overlap in frames; cam_right:1 and cam_right:2 do not.
OVERLAP = make_table(CAMERAS, [(0, 0, 100), (0, 50, 150), (1, 0, 40), (1, 200, 240)])


@pytest.mark.parametrize("entries, message", [
    ({"same": [("cam_left:1", "cam_left:2")]},
     "same[0] [cam_left:1, cam_left:2] put cam_left:1 and cam_left:2 in one person, but camera cam_left sees both at once (frames 51-101)"),
    ({"same": [("cam_left:1", "cam_right:1"), ("cam_right:1", "cam_right:2"), ("cam_right:2", "cam_left:2")]},
     ("same[0] [cam_left:1, cam_right:1] and same[1] [cam_right:1, cam_right:2] and same[2] [cam_right:2, cam_left:2] "
      "put cam_left:1 and cam_left:2 in one person, but camera cam_left sees both at once")),
    ({"same": [("cam_left:1", "cam_right:1"), ("cam_right:1", "cam_right:2")], "different": [("cam_right:2", "cam_left:1")]},
     "different[0] [cam_right:2, cam_left:1] contradicts same[0] [cam_left:1, cam_right:1] and same[1] [cam_right:1, cam_right:2]"),
    ({"same": [("cam_left:1", "cam_right:1")], "different": [("cam_left:1", "cam_right:1")]},
     "different[0] [cam_left:1, cam_right:1] contradicts same[0] [cam_left:1, cam_right:1]"),
    ({"different": [("cam_right:2", "cam_right:2")]}, "different[0] [cam_right:2, cam_right:2] a tracklet cannot differ from itself"),
    ({"same": [("cam_left:1", "cam_right:1")], "alone": ["cam_right:1"]},
     "alone[0] cam_right:1 contradicts same[0] [cam_left:1, cam_right:1]"),
    ({"same": [("cam_left:1", "lobby:1")]}, "same[0] [cam_left:1, lobby:1] names lobby:1, an unknown camera (cameras: cam_left, cam_right)"),
    ({"alone": ["cam_right:9"]}, "alone[0] cam_right:9 names cam_right:9, an unknown tracklet"),
])
def test_contradictions_and_unknown_tracklets_are_refused_naming_the_entries(entries, message):
    with pytest.raises(CctrackError) as error:
        corrected(OVERLAP, unit([[1, 0]] * 4), LOOSE, **entries)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_yaml_form_is_read_as_written(tmp_path):
    path = tmp_path / "corrections.yaml"
    path.write_text("same: [[cam_left:3, cam_right:7]]\ndifferent:\n  - [cam_left:5, cam_right:2]\nalone: [cam_right:9]\n")
    corrections = load_corrections(path)
    assert corrections.same == ((("cam_left", 3), ("cam_right", 7)),)
    assert corrections.different == ((("cam_left", 5), ("cam_right", 2)),)
    assert corrections.alone == (("cam_right", 9),) and corrections.source == str(path)
    path.write_text("")
    assert not load_corrections(path)


@pytest.mark.parametrize("text, message", [
    ("same: [[cam_left:3, cam_right:7]\n", "is not valid YAML (line 2)"),
    ("- cam_left:3\n", "must be a mapping with keys same, different, alone"),
    ("merge: []\n", "unknown key 'merge' (expected same, different, alone)"),
    ("same: cam_left:3\n", "same must be a list of [camera:track, camera:track] pairs"),
    ("same: [[cam_left:3]]\n", "same[0] must be a pair [camera:track, camera:track], got ['cam_left:3']"),
    ("different: [[cam_left:3, cam_right]]\n", "different[0] names 'cam_right', expected camera:track_id like cam_left:3"),
    ("alone: cam_left:3\n", "alone must be a list of camera:track"),
    ("alone: [3]\n", "alone[0] names 3, expected camera:track_id"),
])
def test_bad_files_are_one_clear_line(tmp_path, text, message):
    path = tmp_path / "corrections.yaml"
    path.write_text(text)
    with pytest.raises(CctrackError) as error:
        load_corrections(path)
    assert message in str(error.value) and "\n" not in str(error.value)
