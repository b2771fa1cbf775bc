"""Where people leave one camera and enter the next, learned with the transit time (cctrack.link.evidence)."""

from __future__ import annotations

import dataclasses
import json
import math

import jsonschema
import numpy as np

from cctrack.export import SCHEMA_PATH
from cctrack.link import LinkSettings, link_tracklets
from cctrack.link import evidence
from cctrack.link.candidates import tracklet_seconds
from cctrack.link.layout import CameraLayout
from cctrack.table import TrackletTable
from tests.test_link import make_table, unit
from tests.test_link_evidence import SHARP

WIDTH, HEIGHT = 320.0, 576.0  # each camera's picture


def foot_box(x: float, y: float) -> list[float]:
    """A person's box (xyxy) standing at foot point (x, y), inside the picture."""
    x = min(max(x, 10.0), WIDTH - 10.0)
    y = min(max(y, 80.0), HEIGHT)
    return [x - 10.0, y - 80.0, x + 10.0, y]


def with_boxes(table: TrackletTable, first: list[list[float]], last: list[list[float]]) -> TrackletTable:
    """table (from make_table: a box at each tracklet's first and last frame) with those boxes set."""
    boxes = np.zeros((len(table.frames), 4), np.float32)
    boxes[table.box_offsets[:-1]] = first
    boxes[table.box_offsets[1:] - 1] = last
    return dataclasses.replace(table, boxes=boxes)


def crossing_scene(seed: int, people: int = 30, transit_spread: float = 2.0, related: bool = True):
    """People walk across camera a and leave it at its right edge, at any height; about 30 s later they
    enter camera b at its left edge at the height they left a (the two views share that edge), and walk
    off anywhere. Unrelated: camera b shows other people, at random times, entering by that same edge at
    random heights. Returns the table with boxes, the same table without (boxes all zero), the people
    and the generator."""
    rng = np.random.default_rng(seed)
    rows, first, last, person = [], [], [], []
    for who, start in enumerate(np.sort(rng.uniform(0, 3000, people))):
        height = rng.uniform(100, HEIGHT)
        later = start + 8 + rng.normal(30, transit_spread) if related else rng.uniform(0, 3000)
        enter_height = height if related else rng.uniform(100, HEIGHT)
        rows += [(0, int(start * 10), int((start + 8) * 10)), (1, int(later * 10), int((later + 8) * 10))]
        first += [foot_box(rng.uniform(0, WIDTH), rng.uniform(100, HEIGHT)), foot_box(0, enter_height + rng.normal(0, 10))]
        last += [foot_box(WIDTH, height), foot_box(rng.uniform(0, WIDTH), rng.uniform(100, HEIGHT))]
        person += [who, who if related else people + who]
    spans = make_table(["a", "b"], rows)
    return with_boxes(spans, first, last), spans, np.array(person), rng


def every_cross_pair(table: TrackletTable) -> tuple[np.ndarray, np.ndarray]:
    cam_a, cam_b = np.flatnonzero(table.camera_index == 0), np.flatnonzero(table.camera_index == 1)
    return np.repeat(cam_a, len(cam_b)), np.tile(cam_b, len(cam_a))


def learned_model(table: TrackletTable, person: np.ndarray) -> evidence.TransitModel:
    start, end = tracklet_seconds(table, CameraLayout.open(table.camera_names))
    pair_a, pair_b = every_cross_pair(table)
    confident = np.where(person[pair_a] == person[pair_b], 0.9, 0.01)
    return evidence.fit_transit_model(table, start, end, pair_a, pair_b, confident, math.inf)


def test_boundary_places_are_foot_points_in_units_of_the_picture():
    spans = make_table(["a", "b"], [(0, 0, 10), (0, 5, 20), (1, 0, 0)])
    table = with_boxes(spans, [[0, 0, 20, 100], [100, 50, 120, 150], [5, 5, 15, 25]],
                       [[300, 476, 320, 576], [150, 200, 170, 300], [5, 5, 15, 25]])
    first_seen, last_seen = evidence.boundary_places(table)
    # Camera a's boxes span x 0..320 and y 0..576: the foot point is the bottom centre.
    np.testing.assert_allclose(first_seen[0], [10 / 320, 100 / 576])
    np.testing.assert_allclose(last_seen[0], [310 / 320, 1.0])
    np.testing.assert_allclose(last_seen[1], [160 / 320, 300 / 576])
    # Camera b has one box, of no extent once its corner is the origin: its places read 0 and 1, finite.
    assert np.isfinite(first_seen[2]).all() and np.isfinite(last_seen[2]).all()


def test_where_matches_leave_and_arrive_is_learned_per_direction():
    table, _, person, _ = crossing_scene(0)
    pattern = learned_model(table, person).patterns[(0, 1)]
    # Everyone walks a -> b; nobody walks b -> a, so that direction learns no places.
    assert list(pattern.places) == [0]
    place = pattern.places[0]
    # Leave a at its right edge (x 1), enter b at its left edge (x 0), at any height but the same one.
    assert place.centre[0] > 0.95 and place.centre[2] < 0.05
    correlation = place.covariance[1, 3] / math.sqrt(place.covariance[1, 1] * place.covariance[3, 3])
    assert correlation > 0.8  # about 27 matches at 0.99, with 3 pseudo-matches of the strangers' (uncorrelated)
    assert math.sqrt(place.covariance[1, 1]) > 0.15  # heights spread over the picture
    # identities.json and the log say so, in the schema's terms.
    (row,) = evidence.TransitModel({(0, 1): pattern}).summary(table.camera_names)
    jsonschema.validate([row], json.loads(SCHEMA_PATH.read_text())["properties"]["transit"])
    (way,) = row["ways"]
    assert way["from"] == "a" and way["to"] == "b" and way["leave_at"][0] > 0.95 and way["enter_at"][0] < 0.05


def test_a_few_matches_know_their_places_less_sharply_than_many():
    """Matches' places are shrunk towards the strangers' spread by TRANSIT_PSEUDO_MATCHES pseudo-matches:
    three matches at one spot are as unsure as the strangers' spread halved, thirty nearly pin it."""
    strangers = np.diag([0.1, 0.04, 0.1, 0.04])
    spot = np.tile([[1.0, 0.5, 0.0, 0.5]], (30, 1))
    for matches, expected in ((3, strangers / 2), (30, strangers * 3 / 33)):
        weights = np.zeros((1, 30))
        weights[0, :matches] = 1.0
        centre, covariance = evidence._weighted_place_normal(weights, spot, strangers)
        np.testing.assert_allclose(centre[0], spot[0])
        np.testing.assert_allclose(covariance[0], expected + evidence.MIN_PLACE_SPREAD**2 * np.eye(4))


def test_a_pair_that_walked_the_usual_way_gains_and_one_that_could_not_have_loses():
    table, _, person, _ = crossing_scene(1)
    pattern = learned_model(table, person).patterns[(0, 1)]
    # A slow walk (45 s against the usual 30 s), whose time alone is weaker than the cap.
    usual = evidence.log_gap(np.full(4, 45.0))
    places = evidence.PairPlaces(np.array([
        [1.0, 0.5, 0.0, 0.5],  # left a at its right edge, entered b at its left edge, at that height
        [1.0, 0.8, 0.0, 0.8],  # the same at another height
        [1.0, 0.5, 1.0, 0.5],  # entered b at its far edge: not where a's right edge leads
        [1.0, 0.2, 0.0, 0.9],  # the right edges, but far from the height it left at
    ]), np.zeros(4, np.int64))
    time_alone = pattern.log_likelihood_ratio(usual)
    assert 0.5 < time_alone[0] < evidence.TRANSIT_MAX_LOG_LR - 0.5
    with_places = pattern.log_likelihood_ratio(usual, places)
    assert with_places[0] > time_alone[0] + 0.5 and with_places[1] > time_alone[1] + 0.5
    assert with_places[2] < time_alone[2] - 0.5 and with_places[3] < time_alone[3] - 0.5
    # Together they stay within the transit cap: when and where never outweigh clear appearance evidence.
    assert np.all(np.abs(with_places) <= evidence.TRANSIT_MAX_LOG_LR)
    # A pair going the other way (b -> a), which no match took, reads its time alone.
    other_way = evidence.PairPlaces(places.places, np.ones(4, np.int64))
    np.testing.assert_allclose(pattern.log_likelihood_ratio(usual, other_way), time_alone)


def test_tracklets_without_boxes_read_the_transit_time_alone():
    """Spans with all-zero boxes (what tests and benches build) carry no place: the learned evidence
    equals the transit time's alone."""
    _, spans, person, _ = crossing_scene(2)
    model = learned_model(spans, person)
    start, end = tracklet_seconds(spans, CameraLayout.open(spans.camera_names))
    pair_a, pair_b = every_cross_pair(spans)
    gaps = evidence.signed_gaps(pair_a, pair_b, start, end)
    np.testing.assert_allclose(
        model.log_likelihood_ratio(spans, pair_a, pair_b, gaps, evidence.PairPlaces.of(spans, pair_a, pair_b, start, end)),
        model.log_likelihood_ratio(spans, pair_a, pair_b, gaps), atol=1e-9)


def test_where_a_look_alike_entered_decides_between_two_at_the_usual_time():
    """A new person leaves a at its right edge; 30 s later (the usual transit) two look-alikes enter b at
    once, one at the left edge at the height the person left, the other at b's far edge and a little
    more alike. The transit time cannot tell them apart, so appearance picks the wrong one; where they
    entered picks the right one."""
    table, spans, person, rng = crossing_scene(3)
    identities = unit(rng.normal(size=(30, 64)))
    embeddings = unit(identities[person] + rng.normal(scale=0.02, size=(len(person), 64)))
    base = 40000  # frames, after everyone else
    rows = [tuple(int(v) for v in (table.camera_index[i], table.first_frame[i], table.last_frame[i])) for i in range(len(table))]
    rows += [(0, base, base + 80), (1, base + 80 + 300, base + 80 + 380), (1, base + 80 + 300, base + 80 + 380)]
    first = list(table.boxes[table.box_offsets[:-1]]) + [foot_box(100, 300), foot_box(0, 400), foot_box(WIDTH, 400)]
    last = list(table.boxes[table.box_offsets[1:] - 1]) + [foot_box(WIDTH, 400), foot_box(150, 300), foot_box(150, 300)]
    target, other, another = np.linalg.qr(rng.normal(size=(64, 3)))[0].T  # orthonormal
    right_place, wrong_place = 0.75, 0.77  # log LR +1 and +1.4 (SHARP)
    embeddings = np.vstack([embeddings, unit([target, right_place * target + math.sqrt(1 - right_place**2) * other,
                                              wrong_place * target + math.sqrt(1 - wrong_place**2) * another])])
    spans = make_table(["a", "b"], rows)
    new, at_the_edge, at_the_far_edge = len(rows) - 3, len(rows) - 2, len(rows) - 1
    settings = LinkSettings(center_per_camera=False)
    with_places = link_tracklets(with_boxes(spans, first, last), embeddings, settings, calibration=SHARP)
    assert with_places.identity[new] == with_places.identity[at_the_edge]
    assert with_places.identity[new] != with_places.identity[at_the_far_edge]
    time_alone = link_tracklets(spans, embeddings, settings, calibration=SHARP)
    assert time_alone.identity[new] != time_alone.identity[at_the_edge]
    # The walking people themselves are all found either way.
    for result in (with_places, time_alone):
        for who in range(30):
            assert len(set(result.identity[:60][person == who])) == 1


def test_where_they_walked_finds_a_pattern_that_the_time_alone_leaves_in_doubt():
    """Four people who look alike walk a -> b with a loose transit time (30 +- 6 s), among ten
    look-alike strangers: in time alone that is a weak cluster, and the test refuses it in some scenes;
    in time and place (same edge, same height) it stands out in every one."""
    with_places = time_alone = 0
    for seed in range(6):
        table, spans, person, rng = crossing_scene(seed, transit_spread=6.0)
        start, end = tracklet_seconds(table, CameraLayout.open(table.camera_names))
        pair_a, pair_b = every_cross_pair(table)
        probability = np.full(len(pair_a), 0.01)
        probability[np.flatnonzero(person[pair_a] == person[pair_b])[:4]] = 0.8
        probability[rng.choice(np.flatnonzero(person[pair_a] != person[pair_b]), 10, replace=False)] = 0.8
        with_places += bool(evidence.fit_transit_model(table, start, end, pair_a, pair_b, probability, math.inf).patterns)
        time_alone += bool(evidence.fit_transit_model(spans, start, end, pair_a, pair_b, probability, math.inf).patterns)
    assert with_places == 6 and time_alone <= 4


def test_unrelated_cameras_with_busy_edges_learn_no_pattern():
    """Everyone enters camera b by the edge that faces camera a, but nobody came from a: the places of
    random pairs look just like that, so places add no false pattern (none in 20 scenes, with one pair in
    twenty looking alike at random)."""
    for seed in range(20):
        table, _, _, rng = crossing_scene(seed, related=False)
        start, end = tracklet_seconds(table, CameraLayout.open(table.camera_names))
        pair_a, pair_b = every_cross_pair(table)
        look_alike = np.where(rng.random(len(pair_a)) < 0.05, 0.8, 0.01)
        assert evidence.fit_transit_model(table, start, end, pair_a, pair_b, look_alike, math.inf).patterns == {}
