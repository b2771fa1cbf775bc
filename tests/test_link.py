"""Cross-camera matching on constructed tracklets whose true identities and embeddings we control."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from cctrack.errors import CctrackError
from cctrack.link.layout import CameraLayout
from cctrack.link import LinkSettings, candidate_pairs, center_per_camera, link_tracklets, tracklet_seconds
from cctrack.table import TrackletTable

FPS = 10.0


def make_table(cameras: list[str], rows: list[tuple[int, int, int]]) -> TrackletTable:
    """rows: (camera index, first frame, last frame), all cameras at FPS."""
    rows_array = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return TrackletTable.from_spans(tuple(cameras), (FPS,) * len(cameras), rows_array[:, 0], rows_array[:, 1], rows_array[:, 2])


def unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def at_distance(distance: float, dim: int = 8) -> np.ndarray:
    """Two unit vectors whose cosine distance is `distance`."""
    angle = math.acos(1 - distance)
    first, second = np.zeros(dim), np.zeros(dim)
    first[0], second[0], second[1] = 1, math.cos(angle), math.sin(angle)
    return unit([first, second])


def same_person(result, a: int, b: int) -> bool:
    return bool(result.identity[a] == result.identity[b])


def partition(identity: np.ndarray) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for row, label in enumerate(identity):
        groups.setdefault(int(label), set()).add(row)
    return {frozenset(group) for group in groups.values()}


SETTINGS = LinkSettings(center_per_camera=False, distance_threshold=0.3)


# --- cannot-link ---------------------------------------------------------------------------------


def test_same_camera_overlap_never_merges_even_with_identical_embeddings():
    table = make_table(["a"], [(0, 0, 100), (0, 50, 150)])
    result = link_tracklets(table, unit([[1, 0], [1, 0]]), SETTINGS)
    assert result.identity.tolist() == [1, 2]
    assert result.links == []


def test_cannot_link_holds_through_a_third_tracklet():
    # C (camera b) matches both A and B; A and B overlap in camera a, so only one of them can join C.
    table = make_table(["a", "b"], [(0, 0, 100), (0, 50, 150), (1, 300, 400)])
    embeddings = unit([[1, 0.00, 0], [1, 0.10, 0], [1, 0.02, 0]])
    result = link_tracklets(table, embeddings, SETTINGS)
    assert partition(result.identity) == {frozenset({0, 2}), frozenset({1})}
    # Identical embeddings: whichever joins C, A and B still end apart.
    result = link_tracklets(table, unit([[1, 0], [1, 0], [1, 0]]), SETTINGS)
    assert not same_person(result, 0, 1)
    assert len(set(result.identity.tolist())) == 2


def test_cannot_link_blocks_merging_two_clusters_that_each_passed():
    # {A, C} and {B, D} each form fine; merging the two clusters would join A and B (overlap in camera a).
    table = make_table(["a", "b", "c"], [(0, 0, 100), (0, 50, 150), (1, 300, 400), (2, 600, 700)])
    embeddings = unit([[1, 0, 0], [1, 0.05, 0], [1, 0.01, 0], [1, 0.06, 0]])
    result = link_tracklets(table, embeddings, SETTINGS)
    assert not same_person(result, 0, 1)
    assert len(set(result.identity.tolist())) == 2


# --- threshold, window, re-entry ---------------------------------------------------------------


@pytest.mark.parametrize("distance, merged", [(0.2999, True), (0.3001, False)])
def test_threshold_merges_just_below_and_not_just_above(distance, merged):
    table = make_table(["a", "b"], [(0, 0, 10), (1, 20, 30)])
    result = link_tracklets(table, at_distance(distance), SETTINGS)
    assert same_person(result, 0, 1) is merged
    if merged:
        assert result.links[0].similarity == pytest.approx(1 - distance, abs=1e-5)


@pytest.mark.parametrize("max_gap_seconds, merged", [(50.0, False), (200.0, True), (None, True)])
def test_time_window_limits_comparisons(max_gap_seconds, merged):
    table = make_table(["a", "b"], [(0, 0, 99), (1, 1100, 1200)])  # 100 s between end and start
    settings = LinkSettings(center_per_camera=False, distance_threshold=0.3, max_gap_seconds=max_gap_seconds)
    assert same_person(link_tracklets(table, unit([[1, 0], [1, 0]]), settings), 0, 1) is merged


def test_person_leaving_and_reentering_one_camera_is_rejoined():
    table = make_table(["a"], [(0, 0, 100), (0, 101, 200), (0, 500, 600)])
    result = link_tracklets(table, unit([[1, 0], [1, 0.05], [1, -0.05]]), SETTINGS)
    assert result.identity.tolist() == [1, 1, 1]
    assert len(result.links) == 2


@pytest.mark.parametrize("reentry, merged", [({"max_gap_seconds": 10}, False), ({"min_gap_seconds": 40}, False),
                                              ({"min_gap_seconds": 20, "max_gap_seconds": 40}, True)])
def test_reentry_gap_bounds(reentry, merged):
    table = make_table(["a"], [(0, 0, 99), (0, 400, 500)])  # re-enters 30 s after leaving
    layout = CameraLayout.from_dict({"reentry": reentry}, ["a"])
    assert same_person(link_tracklets(table, unit([[1, 0], [1, 0]]), SETTINGS, layout), 0, 1) is merged


# --- layout gates --------------------------------------------------------------------------------

CONNECTED_AB = {"connections": [{"from": "a", "to": "b", "min_transit_seconds": 5, "max_transit_seconds": 60}]}


def test_unconnected_cameras_never_link():
    table = make_table(["a", "b", "c"], [(0, 0, 99), (1, 200, 300), (2, 200, 300)])
    layout = CameraLayout.from_dict(CONNECTED_AB, ["a", "b", "c"])
    result = link_tracklets(table, unit([[1, 0], [1, 0.01], [1, 0.01]]), SETTINGS, layout)
    assert same_person(result, 0, 1)
    assert not same_person(result, 0, 2)
    # Without a layout every camera connects.
    result = link_tracklets(table, unit([[1, 0], [1, 0.01], [1, -0.01]]), SETTINGS)
    assert result.identity.tolist() == [1, 1, 1]


@pytest.mark.parametrize("transit_seconds, merged", [(3, False), (5, True), (30, True), (60, True), (90, False)])
def test_transit_window(transit_seconds, merged):
    # a ends at frame 99 (10 s exclusive); b starts transit_seconds later.
    start = 100 + int(transit_seconds * FPS)
    table = make_table(["a", "b"], [(0, 0, 99), (1, start, start + 50)])
    layout = CameraLayout.from_dict(CONNECTED_AB, ["a", "b"])
    assert same_person(link_tracklets(table, unit([[1, 0], [1, 0]]), SETTINGS, layout), 0, 1) is merged


def test_one_way_connection_rejects_the_reverse_move():
    config = {"connections": [{**CONNECTED_AB["connections"][0], "both_ways": False}]}
    layout = CameraLayout.from_dict(config, ["a", "b"])
    forward = make_table(["a", "b"], [(0, 0, 99), (1, 300, 350)])
    backward = make_table(["a", "b"], [(0, 300, 350), (1, 0, 99)])
    embeddings = unit([[1, 0], [1, 0]])
    assert same_person(link_tracklets(forward, embeddings, SETTINGS, layout), 0, 1)
    assert not same_person(link_tracklets(backward, embeddings, SETTINGS, layout), 0, 1)


def test_time_offsets_and_fps_override_move_tracklets_onto_the_shared_clock():
    table = make_table(["a", "b"], [(0, 0, 99), (1, 1100, 1200)])  # raw transit 100 s: too long
    embeddings = unit([[1, 0], [1, 0]])
    plain = CameraLayout.from_dict(CONNECTED_AB, ["a", "b"])
    assert not same_person(link_tracklets(table, embeddings, SETTINGS, plain), 0, 1)
    shifted = CameraLayout.from_dict({**CONNECTED_AB, "cameras": {"b": {"time_offset_seconds": -80}}}, ["a", "b"])
    assert same_person(link_tracklets(table, embeddings, SETTINGS, shifted), 0, 1)  # transit 20 s
    # b really runs at 40 fps: frame 1100 is 27.5 s, transit 17.5 s.
    faster = CameraLayout.from_dict({**CONNECTED_AB, "cameras": {"b": {"fps": 40}}}, ["a", "b"])
    start, _ = tracklet_seconds(table, faster)
    assert start[1] == pytest.approx(27.5)
    assert same_person(link_tracklets(table, embeddings, SETTINGS, faster), 0, 1)


@pytest.mark.parametrize("min_transit, merged", [(0, True), (1, False)])
def test_simultaneous_sightings_need_overlapping_views(min_transit, merged):
    table = make_table(["a", "b"], [(0, 0, 100), (1, 50, 150)])
    config = {"connections": [{"from": "a", "to": "b", "min_transit_seconds": min_transit}]}
    layout = CameraLayout.from_dict(config, ["a", "b"])
    assert same_person(link_tracklets(table, unit([[1, 0], [1, 0]]), SETTINGS, layout), 0, 1) is merged


# --- numbering, links, confidence ----------------------------------------------------------------


def three_people(shuffle_seed: int | None):
    rows = [(0, 300, 400), (1, 500, 600), (0, 0, 100), (1, 150, 250), (0, 1000, 1100), (1, 1200, 1300)]
    vectors = [[0, 1, 0], [0, 1, 0.05], [1, 0, 0], [1, 0.05, 0], [0, 0, 1], [0.05, 0, 1]]
    order = np.arange(len(rows)) if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(len(rows))
    return make_table(["a", "b"], [rows[i] for i in order]), unit(vectors)[order], order


def test_identities_are_numbered_by_first_appearance_whatever_the_row_order():
    for seed in (None, 1, 2):
        table, embeddings, order = three_people(seed)
        result = link_tracklets(table, embeddings, SETTINGS)
        by_original_row = np.empty(len(order), np.int64)
        by_original_row[order] = result.identity
        assert by_original_row.tolist() == [2, 2, 1, 1, 3, 3]
        again = link_tracklets(table, embeddings, SETTINGS)
        assert again.identity.tolist() == result.identity.tolist() and again.links == result.links


def test_links_span_each_identity_with_true_similarities_and_confidences():
    table, embeddings, _ = three_people(None)
    result = link_tracklets(table, embeddings, SETTINGS)
    assert len(result.links) == len(table) - result.identity.max()
    for link in result.links:
        assert same_person(result, link.tracklet_a, link.tracklet_b)
        assert link.similarity == pytest.approx(float(embeddings[link.tracklet_a] @ embeddings[link.tracklet_b]), abs=1e-5)
        # Distance 0.00125, rivals at distance >= 0.3 (the threshold): nearly sure.
        assert link.confidence == pytest.approx(1 - (1 - link.similarity) / 0.3, abs=1e-4)
    assert result.identity_confidence.shape == (3,)
    assert np.all(result.identity_confidence > 0.99)


def test_a_look_alike_lowers_confidence():
    # B (camera b) joins A at distance 0.05, while C, another person seen by camera a at the same time
    # as A, is at distance 0.06 from B: a link, but a doubtful one.
    angle_ab, angle_bc = math.acos(1 - 0.05), math.acos(1 - 0.06)
    on_circle = [[math.cos(angle), math.sin(angle)] for angle in (0.0, angle_ab + angle_bc, angle_ab)]
    table = make_table(["a", "b"], [(0, 0, 100), (0, 50, 150), (1, 300, 400)])
    result = link_tracklets(table, unit(on_circle), SETTINGS)
    assert same_person(result, 0, 2) and not same_person(result, 1, 2)
    assert result.links[0].confidence == pytest.approx(1 - 0.05 / 0.06, abs=1e-4)
    assert result.identity_confidence[result.identity[0] - 1] == pytest.approx(1 - 0.05 / 0.06, abs=1e-4)


def test_empty_and_single_tracklet_tables():
    empty = link_tracklets(make_table(["a"], []), np.zeros((0, 4), np.float32), SETTINGS)
    assert empty.identity.shape == (0,) and empty.links == [] and empty.identity_confidence.shape == (0,)
    single = link_tracklets(make_table(["a"], [(0, 0, 5)]), unit([[1, 0]]), SETTINGS)
    assert single.identity.tolist() == [1] and single.identity_confidence.tolist() == [1.0]


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("config, message", [
    ({"cameras": {"x": {"time_offset_seconds": 1}}}, "layout names unknown camera 'x' (known: a, b)"),
    ({"connections": [{"from": "a", "to": "x"}]}, "layout names unknown camera 'x' (known: a, b)"),
    ({"connections": [{"from": "a", "to": "b", "min_transit_seconds": 30, "max_transit_seconds": 10}]},
     "contradictory transit bounds for a->b: min 30 > max 10"),
    ({"connections": [{"from": "a", "to": "b", "min_transit_seconds": -5}]}, "negative transit bound for a->b"),
    ({"reentry": {"min_gap_seconds": 9, "max_gap_seconds": 3}}, "contradictory transit bounds for same-camera re-entry"),
    ({"connections": [{"from": "a", "to": "b", "max_transit_seconds": "soon"}]},
     "layout.connections[0].max_transit_seconds must be a finite number, got 'soon'"),
    ({"cameras": {"a": {"time_offset_seconds": True}}}, "layout.cameras.a.time_offset_seconds must be a finite number"),
    ({"cameras": {"a": {"fps": 0}}}, "layout.cameras.a.fps must be positive"),
    ({"cameras": {"a": {"offset": 3}}}, "unknown key layout.cameras.a.offset"),
    ({"conections": []}, "unknown key layout.conections (known: cameras, connections, reentry)"),
    ({"connections": {"from": "a"}}, "layout.connections must be a list"),
    ({"connections": [{"from": "a"}]}, "layout.connections[0] needs 'to'"),
    ({"connections": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}]}, "connection b->a twice"),
    ({"connections": [{"from": "a", "to": "a"}]}, "connects 'a' to itself"),
    ({"connections": [{"from": "a", "to": "b", "both_ways": "yes"}]}, "both_ways must be true or false"),
])
def test_bad_layouts_are_rejected_naming_the_problem(config, message):
    with pytest.raises(CctrackError) as error:
        CameraLayout.from_dict(config, ["a", "b"])
    assert message in str(error.value)


def test_layout_reads_its_yaml_form():
    text = """
    cameras:
      a: {time_offset_seconds: 1.5, fps: 25}
    connections:
      - {from: a, to: b, min_transit_seconds: 5, max_transit_seconds: null, both_ways: false}
    reentry: {min_gap_seconds: 2}
    """
    layout = CameraLayout.from_dict(yaml.safe_load(text), ["a", "b"])
    assert layout.time_offset_seconds.tolist() == [1.5, 0.0]
    assert layout.camera_clock([10.0, 10.0])[0].tolist() == [25.0, 10.0]
    assert layout.connected.tolist() == [[True, True], [False, True]]
    assert layout.min_transit_seconds[0, 1] == 5 and layout.max_transit_seconds[0, 1] == math.inf
    assert layout.min_transit_seconds[1, 1] == 2
    assert layout.longest_gap_seconds() == math.inf


@pytest.mark.parametrize("embeddings, message", [
    (np.ones(2, np.float32), "shape (N, D)"),
    (unit([[1, 0], [0, 1], [1, 1]]), "3 rows but the tracklet table has 2"),
    (np.array([[1, 0], [np.nan, 0]], np.float32), "NaN or inf in rows [1]"),
    (np.array([[1, 0], [0.5, 0]], np.float32), "L2-normalised: row 1"),
])
def test_bad_embeddings_are_rejected(embeddings, message):
    table = make_table(["a", "b"], [(0, 0, 10), (1, 20, 30)])
    with pytest.raises(CctrackError) as error:
        link_tracklets(table, embeddings, SETTINGS)
    assert message in str(error.value)


def test_layout_for_other_cameras_is_rejected():
    table = make_table(["a", "b"], [(0, 0, 10), (1, 20, 30)])
    with pytest.raises(CctrackError, match="layout cameras"):
        link_tracklets(table, unit([[1, 0], [1, 0]]), SETTINGS, CameraLayout.open(["a", "c"]))


@pytest.mark.parametrize("field, value", [("distance_threshold", 0.0), ("distance_threshold", 2.5), ("linkage", "ward"),
                                          ("max_gap_seconds", -1.0), ("neighbours_per_tracklet", 0), ("block_size", 0)])
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        LinkSettings(**{field: value})


def test_bad_tracklet_tables_are_rejected():
    with pytest.raises(ValueError, match="last_frame"):
        TrackletTable.from_spans(("a",), (10.0,), [0, 0], [0, 5], [3])
    with pytest.raises(ValueError, match="camera_index"):
        TrackletTable.from_spans(("a",), (10.0,), [1], [0], [3])
    with pytest.raises(ValueError, match="first_frame <= last_frame"):
        TrackletTable.from_spans(("a",), (10.0,), [0], [5], [3])
    with pytest.raises(ValueError, match="camera_fps"):
        TrackletTable.from_spans(("a", "b"), (10.0,), [0], [0], [3])


# --- agreement with the plain dense reference -----------------------------------------------------


def reference_pair_allowed(table, start, end, layout, window, i, j) -> bool:
    """The gates for one pair, written out with scalars."""
    camera_i, camera_j = int(table.camera_index[i]), int(table.camera_index[j])
    if camera_i == camera_j and table.first_frame[i] <= table.last_frame[j] and table.first_frame[j] <= table.last_frame[i]:
        return False
    if max(start[j] - end[i], start[i] - end[j], 0.0) > window:
        return False
    simultaneous = start[i] < end[j] and start[j] < end[i]
    for source, target, leave, arrive in ((camera_i, camera_j, end[i], start[j]), (camera_j, camera_i, end[j], start[i])):
        transit = 0.0 if simultaneous else arrive - leave
        if layout.connected[source, target] and layout.min_transit_seconds[source, target] <= transit <= layout.max_transit_seconds[source, target]:
            return True
    return False


def reference_link(table, embeddings, settings, layout) -> set[frozenset[int]]:
    """Dense constrained agglomerative clustering, linkage over the gate-passing pairs, plain loops."""
    count = len(table)
    start, end = tracklet_seconds(table, layout)
    window = math.inf if settings.max_gap_seconds is None else settings.max_gap_seconds
    distance = 1.0 - embeddings.astype(np.float64) @ embeddings.T.astype(np.float64)
    allowed = [[i != j and reference_pair_allowed(table, start, end, layout, window, i, j) for j in range(count)] for i in range(count)]
    clusters = [[row] for row in range(count)]
    while True:
        best = None
        for x in range(len(clusters)):
            for y in range(x + 1, len(clusters)):
                overlapping = any(
                    table.camera_index[i] == table.camera_index[j]
                    and table.first_frame[i] <= table.last_frame[j] and table.first_frame[j] <= table.last_frame[i]
                    for i in clusters[x] for j in clusters[y])
                pair_distances = [distance[i, j] for i in clusters[x] for j in clusters[y] if allowed[i][j]]
                if overlapping or not pair_distances:
                    continue
                linkage = {"average": np.mean, "single": min, "complete": max}[settings.linkage](pair_distances)
                if best is None or linkage < best[0]:
                    best = (linkage, x, y)
        if best is None or best[0] > settings.distance_threshold:
            return {frozenset(cluster) for cluster in clusters}
        _, x, y = best
        clusters[x] = clusters[x] + clusters.pop(y)


def random_scene(seed: int, count: int = 36, people: int = 7, cameras: int = 4):
    """Noisy look-alikes spread over 10 minutes: linkage choice and merge order change the answer."""
    rng = np.random.default_rng(seed)
    person = rng.integers(0, people, count)
    centres = unit(rng.normal(size=(people, 16)))
    embeddings = unit(centres[person] + rng.normal(scale=0.22, size=(count, 16)))
    first = rng.integers(0, 6000, count)
    table = make_table([f"c{c}" for c in range(cameras)],
                       list(zip(rng.integers(0, cameras, count), first, first + rng.integers(20, 400, count))))
    return table, embeddings


@pytest.mark.parametrize("linkage", ["average", "single", "complete"])
@pytest.mark.parametrize("seed, threshold", [(0, 0.35), (1, 0.5), (2, 0.8), (3, 1.0)])
def test_sparse_clustering_matches_the_dense_reference_when_every_pair_is_a_candidate(linkage, seed, threshold):
    # Thresholds of 0.8 and 1.0 merge different people too: many merges whose order the linkage decides.
    table, embeddings = random_scene(seed)
    settings = LinkSettings(center_per_camera=False, distance_threshold=threshold, linkage=linkage, neighbours_per_tracklet=len(table), block_size=5)
    layout = CameraLayout.open(table.camera_names)
    assert partition(link_tracklets(table, embeddings, settings).identity) == reference_link(table, embeddings, settings, layout)


def test_sparse_clustering_matches_the_dense_reference_with_layout_and_window():
    table, embeddings = random_scene(3, count=40)
    config = {"connections": [{"from": "c0", "to": "c1", "max_transit_seconds": 60},
                              {"from": "c1", "to": "c2", "min_transit_seconds": 5, "max_transit_seconds": 120, "both_ways": False}],
              "cameras": {"c2": {"time_offset_seconds": -20}},
              "reentry": {"max_gap_seconds": 200}}
    layout = CameraLayout.from_dict(config, table.camera_names)
    settings = LinkSettings(center_per_camera=False, distance_threshold=0.35, max_gap_seconds=150, neighbours_per_tracklet=len(table), block_size=7)
    expected = reference_link(table, embeddings, settings, layout)
    assert partition(link_tracklets(table, embeddings, settings, layout).identity) == expected
    assert len(expected) < len(table)  # the scene does merge something


RING = {"connections": [{"from": "c0", "to": "c1", "max_transit_seconds": 90}, {"from": "c1", "to": "c2", "min_transit_seconds": 10},
                        {"from": "c2", "to": "c3", "max_transit_seconds": 120, "both_ways": False},
                        {"from": "c3", "to": "c0", "both_ways": False}],
        "cameras": {"c3": {"time_offset_seconds": 30}}}


@pytest.mark.parametrize("layout_config", [None, RING])
def test_candidate_search_keeps_each_tracklets_nearest_allowed_partners(layout_config):
    table, embeddings = random_scene(5, count=80)
    layout = CameraLayout.from_dict(layout_config, table.camera_names)
    start, end = tracklet_seconds(table, layout)
    settings = LinkSettings(center_per_camera=False, neighbours_per_tracklet=3, max_gap_seconds=200, block_size=8)
    pair_a, pair_b, distance = candidate_pairs(table, embeddings, start, end, settings, layout)
    found = {(a, b): d for a, b, d in zip(pair_a.tolist(), pair_b.tolist(), distance.tolist())}
    expected = set()
    for i in range(len(table)):
        partners = [j for j in range(len(table)) if j != i and reference_pair_allowed(table, start, end, layout, 200, i, j)]
        partners.sort(key=lambda j: -float(embeddings[i] @ embeddings[j]))
        expected |= {(min(i, j), max(i, j)) for j in partners[:3]}
    assert set(found) == expected
    for (a, b), pair_distance in found.items():
        assert pair_distance == pytest.approx(1 - float(embeddings[a] @ embeddings[b]), abs=1e-5)
    # Block size changes the work split, not the answer.
    bigger = candidate_pairs(table, embeddings, start, end, LinkSettings(center_per_camera=False, neighbours_per_tracklet=3, max_gap_seconds=200), layout)
    assert np.array_equal(bigger[0], pair_a) and np.array_equal(bigger[1], pair_b)


def test_few_neighbours_still_recover_well_separated_people():
    rng = np.random.default_rng(7)
    count, people = 400, 40
    person = np.repeat(np.arange(people), count // people)
    # Each person walks through cameras one after another; cameras never see one person twice at once.
    first = person * 10 + np.tile(np.arange(count // people), people) * 600
    table = make_table([f"c{c}" for c in range(5)], list(zip(rng.integers(0, 5, count), first, first + 300)))
    embeddings = unit(unit(rng.normal(size=(people, 64)))[person] + rng.normal(scale=0.05, size=(count, 64)))
    result = link_tracklets(table, embeddings, LinkSettings(center_per_camera=False, neighbours_per_tracklet=5, block_size=64, distance_threshold=0.5))
    assert partition(result.identity) == partition(person)


def test_centering_per_camera_removes_a_camera_wide_appearance_shift():
    """Two people seen by two cameras whose look (colour, background) shifts every embedding of a camera the
    same way: raw, each camera's tracklets look alike; centred, the people match across cameras."""
    rng = np.random.default_rng(3)
    person = rng.normal(size=(2, 64))
    camera_look = rng.normal(size=(2, 64)) * 3.0
    visits = 8  # each person passes each camera 8 times: enough tracklets for a well-estimated camera mean
    rows = [(camera, who) for camera in (0, 1) for _ in range(visits) for who in (0, 1)]
    embeddings = np.array([person[who] + camera_look[camera] + rng.normal(scale=0.05, size=64) for camera, who in rows])
    embeddings = (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float32)
    table = TrackletTable.from_spans(
        camera_names=("a", "b"),
        camera_fps=(10.0, 10.0),
        camera_index=np.array([camera for camera, _ in rows]),
        first_frame=np.array([100 * (i // 2 % visits) for i in range(len(rows))]),
        last_frame=np.array([100 * (i // 2 % visits) + 50 for i in range(len(rows))]),
    )
    raw = link_tracklets(table, embeddings, LinkSettings(distance_threshold=0.8, center_per_camera=False))
    centred = link_tracklets(table, embeddings, LinkSettings(distance_threshold=0.8))
    same_person = np.array([who for _, who in rows])
    raw_groups = {tuple(np.flatnonzero(raw.identity == i)) for i in np.unique(raw.identity)}
    assert all(len({camera for camera, _ in (rows[j] for j in group)}) == 1 for group in raw_groups)
    for who in (0, 1):
        assert len(set(centred.identity[same_person == who])) == 1
    assert centred.identity[0] != centred.identity[1]


def test_centering_barely_moves_a_camera_with_a_single_tracklet():
    embeddings = np.eye(3, dtype=np.float32)[[0, 1, 1]]
    centred = center_per_camera(embeddings, np.array([0, 1, 1]))
    assert np.allclose(centred[0], embeddings[0])
    assert np.allclose(np.linalg.norm(centred, axis=1), 1.0)
