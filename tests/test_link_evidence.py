"""Link probabilities: open-world prior, calibrated appearance evidence, transit times learned from the run."""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np
import pytest

from cctrack.errors import CctrackError
from cctrack.export import SCHEMA_PATH
from cctrack.link import LinkCalibration, LinkSettings, link_tracklets
from cctrack.link import evidence
from cctrack.link.candidates import tracklet_seconds
from cctrack.link.layout import CameraLayout
from tests.test_link import at_distance, make_table, unit

# Appearance evidence of a sharp model: log LR = 20 cos - 14 (cos 0.9 -> +4, cos 0.5 -> -4). Its null
# (median 0.99, spread 1) is above what these scenes' strangers show, so the run's null never moves it.
SHARP = LinkCalibration(slope=20.0, intercept=-14.0, positive_pairs=1, negative_pairs=1, roc_auc=1.0,
                        negative_centre=0.99, negative_spread=1.0)
PLAIN = LinkSettings(center_per_camera=False, learn_transit=False)


def test_candidate_counts_match_a_brute_force_count():
    rng = np.random.default_rng(0)
    first = rng.integers(0, 2000, 60)
    table = make_table(["a", "b", "c"], list(zip(rng.integers(0, 3, 60), first, first + rng.integers(0, 300, 60))))
    start, end = tracklet_seconds(table, CameraLayout.open(table.camera_names))
    for window in (0.0, 25.0, math.inf):
        counts = evidence.candidate_counts(table, start, end, window)
        for i in range(len(table)):
            for camera in range(3):
                near = [j for j in range(len(table)) if j != i and table.camera_index[j] == camera
                        and start[j] <= end[i] + window and end[j] >= start[i] - window]
                assert counts[i, camera] == len(near)


def test_a_lone_pair_links_with_its_calibrated_probability():
    table = make_table(["a", "b"], [(0, 0, 50), (1, 100, 150)])
    for cosine in (0.85, 0.95):
        embeddings = at_distance(1 - cosine)
        result = link_tracklets(table, embeddings, PLAIN, calibration=SHARP)
        # One candidate on each side: prior 0.5 / 1, capped at even odds, so the probability is the LR's.
        expected = 1 / (1 + math.exp(-(SHARP.slope * cosine + SHARP.intercept)))
        assert len(result.links) == 1
        assert result.links[0].confidence == pytest.approx(expected, abs=1e-6)
        assert result.links[0].similarity == pytest.approx(cosine, abs=1e-5)


def test_below_min_probability_nothing_links():
    table = make_table(["a", "b"], [(0, 0, 50), (1, 100, 150)])
    cosine = 0.75  # log LR +1: probability 0.73 < 0.9
    result = link_tracklets(table, at_distance(1 - cosine), PLAIN, calibration=SHARP)
    assert result.links == [] and len(set(result.identity)) == 2


def test_reentry_pairs_read_their_own_calibration_and_cross_camera_pairs_do_not():
    # The same cosine (0.9: +4 on SHARP) in one camera and across two. A re-entry curve that asks for
    # more (one camera renders a person alike each time: log LR = 20 cos - 19, -1 at 0.9) stops the
    # same-camera link and leaves the cross-camera one as it was.
    strict_reentry = LinkCalibration(slope=20.0, intercept=-19.0, positive_pairs=1, negative_pairs=1, roc_auc=1.0,
                                     negative_centre=0.99, negative_spread=1.0)
    with_reentry = LinkCalibration(**{**SHARP.as_dict(), "reentry": strict_reentry})
    embeddings = at_distance(0.1)
    one_camera = make_table(["a"], [(0, 0, 50), (0, 100, 150)])
    two_cameras = make_table(["a", "b"], [(0, 0, 50), (1, 100, 150)])
    assert len(link_tracklets(one_camera, embeddings, PLAIN, calibration=SHARP).links) == 1
    assert link_tracklets(one_camera, embeddings, PLAIN, calibration=with_reentry).links == []
    across = link_tracklets(two_cameras, embeddings, PLAIN, calibration=with_reentry).links
    assert len(across) == 1 and across[0].confidence == pytest.approx(1 / (1 + math.exp(-4.0)), abs=1e-6)
    table = make_table(["a", "b"], [(0, 0, 50), (0, 100, 150), (1, 200, 250)])
    pair_a, pair_b = np.array([0, 0, 1]), np.array([1, 2, 2])
    log_lr = evidence.appearance_log_lr(table, pair_a, pair_b, np.full(3, 0.9), {}, with_reentry)
    np.testing.assert_allclose(log_lr, [-1.0, 4.0, 4.0], atol=1e-9)


def test_more_candidates_make_the_same_similarity_less_convincing():
    """One tracklet in camera a; camera b shows the look-alike alone, or among 15 other people."""
    rng = np.random.default_rng(1)
    cosine = 0.9  # log LR +4: enough against 1 candidate (odds e^4), not against 16 (prior 1/32)
    pair = at_distance(1 - cosine, dim=64)
    strangers = unit(rng.normal(size=(15, 64)) + np.eye(64)[5] * 0)  # far from both
    alone = link_tracklets(make_table(["a", "b"], [(0, 0, 50), (1, 100, 150)]), pair, PLAIN, calibration=SHARP)
    crowd_rows = [(0, 0, 50), (1, 100, 150)] + [(1, 100 + 60 * k, 150 + 60 * k) for k in range(1, 16)]
    crowd = link_tracklets(make_table(["a", "b"], crowd_rows), np.vstack([pair, strangers]), PLAIN, calibration=SHARP)
    assert alone.identity[0] == alone.identity[1]
    assert crowd.identity[0] != crowd.identity[1]


def test_without_a_calibration_or_a_distance_threshold_linking_refuses():
    table = make_table(["a", "b"], [(0, 0, 50), (1, 100, 150)])
    with pytest.raises(CctrackError, match="no link calibration"):
        link_tracklets(table, at_distance(0.1), LinkSettings())


@pytest.mark.parametrize("field, value", [("min_probability", 0.4), ("min_probability", 1.0),
                                          ("prior_seen_elsewhere", 0.0), ("prior_seen_elsewhere", 1.0)])
def test_bad_probability_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        LinkSettings(**{field: value})


def walking_scene(seed: int, people: int = 30, transit_seconds: float = 30.0, related: bool = True):
    """People seen in camera a, then (if related) in camera b after about `transit_seconds`; every
    camera-b tracklet of an unrelated scene is someone else, at a random time."""
    rng = np.random.default_rng(seed)
    appear = np.sort(rng.uniform(0, 3000, people))
    rows, person = [], []
    for who, start in enumerate(appear):
        rows.append((0, int(start * 10), int((start + 8) * 10)))
        person.append(who)
        later = start + 8 + rng.normal(transit_seconds, 2.0) if related else rng.uniform(0, 3000)
        rows.append((1, int(later * 10), int((later + 8) * 10)))
        person.append(who if related else people + who)
    return make_table(["a", "b"], rows), np.array(person), rng


def test_transit_times_are_learned_from_confident_matches():
    table, person, _ = walking_scene(0)
    start, end = tracklet_seconds(table, CameraLayout.open(table.camera_names))
    cam_a, cam_b = np.flatnonzero(table.camera_index == 0), np.flatnonzero(table.camera_index == 1)
    pair_a = np.repeat(cam_a, len(cam_b))
    pair_b = np.tile(cam_b, len(cam_a))
    confident = person[pair_a] == person[pair_b]
    model = evidence.fit_transit_model(table, start, end, pair_a, pair_b, confident, math.inf)
    ratio = model.log_likelihood_ratio(table, np.array([0, 0, 0]), np.array([1, 1, 1]), np.array([30.0, 300.0, -5.0]))
    assert ratio[0] > 2.0  # the typical transit time is strong evidence
    assert ratio[1] < 0 and ratio[2] < 0  # far off it, or seen at the same time, is evidence against
    # What identities.json and the log report: the 30 s walk (start to start 38 s, minus the 8 s tracklet).
    (row,) = model.summary(table.camera_names)
    jsonschema.validate([row], json.loads(SCHEMA_PATH.read_text())["properties"]["transit"])
    assert row["cameras"] == ["a", "b"] and 27 < row["typical_seconds"] < 33 and row["matches"] > 25
    assert row["range_seconds"][0] < row["typical_seconds"] < row["range_seconds"][1]


def test_a_camera_pair_learns_the_same_pattern_whatever_other_cameras_show():
    """Cameras a and b share a 30 s walk, with enough tracklets that their strangers are a random sample
    of pairs; a camera c added in front of them (its pairs fitted first) leaves their pattern exactly as
    it was: each camera pair draws its random pairs and shuffles from a generator seeded by its cameras'
    names."""
    table, person, rng = walking_scene(0, people=80)
    start, end = tracklet_seconds(table, CameraLayout.open(table.camera_names))
    pair_a, pair_b = every_cross_pair(table)
    probability = np.where(person[pair_a] == person[pair_b], 0.9, 0.01)
    alone = evidence.fit_transit_model(table, start, end, pair_a, pair_b, probability, math.inf).patterns[(0, 1)]

    extra = [(0, int(t * 10), int((t + 8) * 10)) for t in rng.uniform(0, 3000, 80)]
    rows = extra + [(camera + 1, first, last) for camera, first, last in
                    zip(table.camera_index, table.first_frame, table.last_frame)]
    with_c = make_table(["c", "a", "b"], rows)
    start, end = tracklet_seconds(with_c, CameraLayout.open(with_c.camera_names))
    c_rows, ab_rows = np.arange(80), np.arange(80, len(with_c))
    c_a = np.repeat(c_rows, len(ab_rows)), np.tile(ab_rows, len(c_rows))
    look_alike = np.where(rng.random(len(c_a[0])) < 0.1, 0.8, 0.01)
    model = evidence.fit_transit_model(with_c, start, end, np.concatenate([c_a[0], pair_a + 80]),
                                       np.concatenate([c_a[1], pair_b + 80]), np.concatenate([look_alike, probability]),
                                       math.inf)
    together = model.patterns[(1, 2)]
    assert (together.share, together.centre, together.spread, together.matches) == (
        alone.share, alone.centre, alone.spread, alone.matches)


def every_cross_pair(table) -> tuple[np.ndarray, np.ndarray]:
    cam_a, cam_b = np.flatnonzero(table.camera_index == 0), np.flatnonzero(table.camera_index == 1)
    return np.repeat(cam_a, len(cam_b)), np.tile(cam_b, len(cam_a))


@pytest.mark.parametrize("seed", range(20))
def test_unrelated_cameras_learn_no_transit_pattern(seed):
    """Two cameras that share nobody: their look-alike pairs (one in twenty, at random) fall at random
    gaps, and none of 20 such scenes shows a pattern (the permutation test keeps each chance below 1 in
    100)."""
    table, _, rng = walking_scene(seed, related=False)
    start, end = tracklet_seconds(table, CameraLayout.open(table.camera_names))
    pair_a, pair_b = every_cross_pair(table)
    look_alike = np.where(rng.random(len(pair_a)) < 0.05, 0.8, 0.01)
    model = evidence.fit_transit_model(table, start, end, pair_a, pair_b, look_alike, math.inf)
    assert model.patterns == {}


def test_a_learned_transit_time_decides_between_two_look_alikes():
    """Camera b holds two equally similar candidates for a doubtful pair, 30 s and 200 s after it: the one
    at the camera pair's usual transit time (30 s) is linked, the one at an odd gap is not."""
    table, person, rng = walking_scene(2, people=30)
    identities = unit(rng.normal(size=(60, 64)))
    embeddings = unit(identities[person] + rng.normal(scale=0.02, size=(len(person), 64)))
    # The doubtful case: a new person in a, and two look-alikes of them in b.
    rows = [tuple(int(v) for v in (table.camera_index[i], table.first_frame[i], table.last_frame[i])) for i in range(len(table))]
    base = 40000  # frames, after everyone else
    rows += [(0, base, base + 80), (1, base + 80 + 300, base + 80 + 380), (1, base + 80 + 2000, base + 80 + 2080)]
    target, other, another = np.linalg.qr(rng.normal(size=(64, 3)))[0].T  # orthonormal
    cosine = 0.75  # log LR +1, against a prior of 1 in 2.8 (two candidates in b): probability 0.6
    sine = math.sqrt(1 - cosine**2)
    # Both look like the target, and not like each other (cos 0.56): two different people.
    embeddings = np.vstack([embeddings, unit([target, cosine * target + sine * other, cosine * target + sine * another])])
    table = make_table(["a", "b"], rows)
    learned = link_tracklets(table, embeddings, LinkSettings(center_per_camera=False), calibration=SHARP)
    appearance_only = link_tracklets(table, embeddings, PLAIN, calibration=SHARP)
    new, usual_gap, odd_gap = len(rows) - 3, len(rows) - 2, len(rows) - 1
    assert learned.identity[new] == learned.identity[usual_gap]
    assert learned.identity[new] != learned.identity[odd_gap]
    assert appearance_only.identity[new] != appearance_only.identity[usual_gap]
    # The walking people themselves are all found, with or without transit evidence.
    for result in (learned, appearance_only):
        for who in range(30):
            assert len(set(result.identity[:60][person == who])) == 1


def test_a_configured_layout_replaces_the_learned_transit_times():
    table, person, rng = walking_scene(3)
    embeddings = unit(unit(rng.normal(size=(60, 64)))[person] + rng.normal(scale=0.3, size=(len(person), 64)))
    layout = CameraLayout.from_dict({"connections": [{"from": "a", "to": "b"}]}, table.camera_names)
    with_layout = link_tracklets(table, embeddings, LinkSettings(center_per_camera=False), layout, SHARP)
    without_learning = link_tracklets(table, embeddings, PLAIN, layout, SHARP)
    assert np.array_equal(with_layout.identity, without_learning.identity)


def look_alike_scene(seed: int, shared_look: float):
    """12 people seen in camera a, then in camera b; every embedding also carries a look shared by
    everyone in the scene (dark coats, one background), of weight `shared_look`."""
    rng = np.random.default_rng(seed)
    people = unit(rng.normal(size=(12, 64)))
    shared = unit(rng.normal(size=(1, 64)))[0]
    rows, person = [], []
    for who in range(12):
        rows += [(0, 300 * who, 300 * who + 80), (1, 300 * who + 120, 300 * who + 200)]
        person += [who, who]
    person = np.array(person)
    noise = rng.normal(scale=0.3 / 8, size=(len(person), 64))
    return make_table(["a", "b"], rows), unit(people[person] + noise + shared_look * shared), person


def test_strangers_who_all_look_alike_weaken_the_evidence():
    """Calibrated on strangers with cosine about 0 (spread 0.1): in a scene whose strangers all share a
    look, the run's own null shows that, and the same people are no longer linked at high probability."""
    calibration = LinkCalibration(slope=12.0, intercept=-2.0, positive_pairs=1, negative_pairs=1, roc_auc=0.99,
                                  negative_centre=0.0, negative_spread=0.1)
    settings = LinkSettings(center_per_camera=False, learn_transit=False)
    table, distinct, person = look_alike_scene(0, shared_look=0.0)
    _, alike, _ = look_alike_scene(0, shared_look=2.0)
    separate = link_tracklets(table, distinct, settings, calibration=calibration)
    crowded = link_tracklets(table, alike, settings, calibration=calibration)
    assert all(len(set(separate.identity[person == who])) == 1 for who in range(12))
    assert len(crowded.links) < len(separate.links) / 2
    assert all(link.confidence >= 0.9 for link in crowded.links)


def test_a_transit_pattern_is_found_among_look_alike_strangers():
    """Of the 40 pairs that look alike, half are strangers at random gaps, and every other pair is an
    unlikely match: EM still finds the 30 s transit. The strangers alone give no pattern."""
    table, person, rng = walking_scene(4, people=40)
    start, end = tracklet_seconds(table, CameraLayout.open(table.camera_names))
    pair_a, pair_b = every_cross_pair(table)
    same = np.flatnonzero(person[pair_a] == person[pair_b])[:20]
    strangers = rng.choice(np.flatnonzero(person[pair_a] != person[pair_b]), 20, replace=False)
    for look_alike, expect_pattern in ((np.r_[same, strangers], True), (strangers, False)):
        probability = np.full(len(pair_a), 0.01)
        probability[look_alike] = 0.8
        model = evidence.fit_transit_model(table, start, end, pair_a, pair_b, probability, math.inf)
        ratio = model.log_likelihood_ratio(table, np.array([0]), np.array([1]), np.array([30.0]))
        assert (ratio[0] > 1.0) == expect_pattern


def test_matches_at_one_gap_stand_out_from_look_alikes_at_others():
    """A short clip of two neighbouring cameras: 10 people crossed the blind strip between them in 1-3 s;
    their pairs look alike to varying degrees, and 10 pairs of strangers spread over a minute look as
    alike as the best of them. EM started from all look-alikes' gaps at once settles on the broad spread;
    started where the matches lie, it finds the 2 s transit, which beats every shuffle of the match
    probabilities."""
    rng = np.random.default_rng(5)
    rows = [(0, int(t * 10), int(t * 10) + 40) for t in np.sort(rng.uniform(0, 80, 20))]
    rows += [(1, int(t * 10), int(t * 10) + 40) for t in np.sort(rng.uniform(0, 80, 18))]
    crossers = rng.choice(20, 10, replace=False)
    for a_row in crossers:
        begin = rows[a_row][2] + 1 + int(rng.uniform(1.0, 3.0) * 10)
        rows.append((1, begin, begin + 40))
    table = make_table(["a", "b"], rows)
    start, end = tracklet_seconds(table, CameraLayout.open(table.camera_names))
    pair_a, pair_b = every_cross_pair(table)
    # The other pairs' match probabilities sum to about 3, as an open-world prior of 0.5 / n gives them.
    probability = np.full(len(pair_a), 0.002)
    for a_row, b_row, alike in zip(crossers, range(38, 48), np.linspace(0.2, 0.8, 10)):
        probability[(pair_a == a_row) & (pair_b == b_row)] = alike
    gaps = evidence.signed_gaps(pair_a, pair_b, start, end)
    strangers = rng.choice(np.flatnonzero((gaps > 10) & (probability < 0.1)), 10, replace=False)
    probability[strangers] = 0.8
    model = evidence.fit_transit_model(table, start, end, pair_a, pair_b, probability, math.inf)
    assert list(model.patterns) == [(0, 1)]
    ratio = model.log_likelihood_ratio(table, np.zeros(3, np.int64), np.full(3, 38), np.array([2.0, 30.0, -5.0]))
    assert ratio[0] > 1.5 and ratio[1] < 0 and ratio[2] < 0
    # The strangers alone: no pattern.
    probability[np.isin(np.arange(len(pair_a)), strangers, invert=True)] = 0.002
    assert evidence.fit_transit_model(table, start, end, pair_a, pair_b, probability, math.inf).patterns == {}


def test_stopping_the_permutations_early_gives_the_decision_all_of_them_give():
    """fit_transit_pattern stops once more than TRANSIT_CHANCE_REACHES shuffled fits reach the pattern;
    the decision must be the full test's: at most that many of all TRANSIT_PERMUTATIONS shuffles reach it
    (same shuffles, same order)."""
    decisions = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        log_gaps = rng.uniform(-2, 4, 80)
        probability = np.full(80, 0.02)
        probability[:12] = rng.uniform(0.3, 0.9, 12)
        log_gaps[: seed % 8] = rng.normal(1.0, 0.1, seed % 8)  # 0-7 matches at one gap: weak to clear
        strangers = evidence.RandomGaps.of(rng.uniform(-2, 4, 400))
        found = evidence.fit_transit_pattern(log_gaps, probability, strangers, np.random.default_rng(seed))
        shuffles = np.random.default_rng(seed)
        rows = np.stack([probability] + [shuffles.permutation(probability) for _ in range(evidence.TRANSIT_PERMUTATIONS)])
        starts = evidence.em_starts(log_gaps, probability)
        _, _, spread, matches, fit_evidence = evidence._fit_mixture(log_gaps, strangers.density(log_gaps), rows, starts)
        shape_ok = matches[0] >= evidence.PATTERN_MIN_MATCHES and spread[0] <= evidence.PATTERN_MAX_SPREAD * strangers.spread
        reached = int((fit_evidence[1:] >= fit_evidence[0]).sum())
        full_test = shape_ok and reached <= evidence.TRANSIT_CHANCE_REACHES
        assert (found is not None) == full_test
        decisions.append((shape_ok, full_test, 0 < reached <= evidence.TRANSIT_CHANCE_REACHES))
    # Both outcomes of the permutation test itself occur, so the comparison means something, and so does
    # a pattern that a few shuffles reach (the old every-shuffle-must-lose rule refused those).
    assert (True, True, False) in decisions and (True, False, False) in decisions
    assert (True, True, True) in decisions


def split_people_scene(seed: int, independent: bool):
    """Two cameras an hour apart in time of day; strangers come and go at random. 24 likely pairs sit at
    one gap of about 1000 s: either 24 different people who each crossed once (independent), or one
    look-alike couple, each of them seen in 5 tracklets within a minute (5 x 5 pairs, one event)."""
    rng = np.random.default_rng(seed)
    rows = [(camera, int(t * 10), int(t * 10) + 80) for camera in (0, 1) for t in rng.uniform(0, 3600, 60)]
    likely = []
    if independent:
        for t in rng.uniform(0, 2500, 24):
            later = t + 1008 + rng.normal(0, 60)
            rows += [(0, int(t * 10), int(t * 10) + 80), (1, int(later * 10), int(later * 10) + 80)]
            likely.append((len(rows) - 2, len(rows) - 1))
    else:
        begin = rng.uniform(0, 2500)
        first = [len(rows) + k for k in range(5)]
        rows += [(0, int((begin + 12 * k) * 10), int((begin + 12 * k) * 10) + 80) for k in range(5)]
        second = [len(rows) + k for k in range(5)]
        rows += [(1, int((begin + 1008 + 12 * k) * 10), int((begin + 1008 + 12 * k) * 10) + 80) for k in range(5)]
        likely = [(a, b) for a in first for b in second][:24]
    table = make_table(["a", "b"], rows)
    pair_a, pair_b = every_cross_pair(table)
    probability = np.full(len(pair_a), 0.002)
    index = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(pair_a, pair_b))}
    for a, b in likely:
        probability[index[(a, b)]] = 0.8
    return table, pair_a, pair_b, probability


@pytest.mark.parametrize("seed", range(3))
def test_many_pairs_of_one_look_alike_couple_are_one_event_not_a_transit_pattern(seed):
    """24 of the 25 pairs of two look-alike strangers, each split into 5 tracklets, sit at one gap: counted
    as about 19 independent matches they beat every shuffle, but they are one coincidence. Pairs that
    share tracklets are counted once per group, so no pattern; 24 different people at that gap are one."""
    for independent, expect_pattern in ((False, False), (True, True)):
        table, pair_a, pair_b, probability = split_people_scene(seed, independent)
        start, end = tracklet_seconds(table, CameraLayout.open(table.camera_names))
        model = evidence.fit_transit_model(table, start, end, pair_a, pair_b, probability, math.inf)
        assert (model.patterns != {}) == expect_pattern


def test_independent_matches_count_each_group_of_joined_tracklets_once():
    first, second = np.array([0, 0, 1, 1, 5, 7]), np.array([2, 3, 2, 3, 6, 8])
    in_pattern = np.array([0.9, 0.9, 0.9, 0.9, 0.6, 0.1])  # 4 pairs of one group; one pair alone; one unlikely
    assert evidence.independent_matches(in_pattern, first, second) == pytest.approx(1.0 + 0.6)
    assert evidence.independent_matches(np.zeros(6), first, second) == 0.0
