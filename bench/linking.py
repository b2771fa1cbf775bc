"""Cross-camera identity in the app, on the bundled sample: the shipped re-id model against the ImageNet
baseline, the colour histogram and no linking, all in the same run and on the same tracklets.

`cctrack run` (detection, tracking, crops; no video) runs once per footage: the sample, and a stress copy
whose cam_right has its hue rotated by 90 degrees (everyone's clothes change colour between cameras).
Then every descriptor re-links the same cached tracklets with the default link settings, and is scored
against the sample's ground truth (derived from ../shared/data/PETS09-S2L1; never used to choose a
default):

- multi-camera IDF1 (py-motmetrics, cameras concatenated, global ids kept), per-camera IDF1;
- people kept: of the people seen in both cameras, how many have the same majority identity in both;
- cross-camera link precision: of the cross-camera tracklet pairs put into one identity, the share that
  are one person (each tracklet is labelled with the ground-truth person its boxes overlap most); the
  same count, right and wrong, for pairs of one camera's tracklets (re-entry);
- ROC AUC of the link log-odds over all cross-camera tracklet pairs (same person vs not), and over each
  camera's pairs seen at different times (re-entry), with the re-entry pairs' highest probabilities,
  strangers' and same-person, each pair on its own before any merge;
- whether the appearance evidence is calibrated on this footage: the strangers' mean likelihood ratio
  (1 when calibrated) and the same-person pairs' median log LR;
- an oracle sweep over link.min_probability, chosen on the test data: an upper bound, not a result;
- oracle re-entry: each camera's breaks of one person joined from the ground truth, and no cross-camera
  link (also an upper bound): how much per-camera IDF1 better re-entry linking could win;
- per camera pair, the permutation p-value of the transit cluster (time and place, as the run tests
  it) with 1,999 shuffles (the run draws up to 299): how close a learned (or refused) pattern is to the
  test's 1-in-100 edge.

    python -m bench.linking [--out bench/results/linking] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import yaml

from bench.stress import make_hue_rotated_copy
from bench.record import write_record
from cctrack import cache
from cctrack.config import load_config
from cctrack.embed import load_embedder, model_identity
from cctrack.evaluate import evaluate_run
from cctrack.mot import read_mot_txt, write_mot_txt
from cctrack.link import LinkSettings, candidate_pairs, center_per_camera, evidence, pair_log_odds, tracklet_seconds
from cctrack.link.layout import CameraLayout
from cctrack.pipeline import relink, run
from cctrack.sample import write_sample_ground_truth
from cctrack.table import TrackletTable
from reid.calibration import roc_auc

REPOSITORY = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPOSITORY / "samples" / "pets09"
DESCRIPTORS = {  # name -> config overrides
    "shipped CSSC-MobileNetV2": [],
    "ImageNet MobileNetV2 (old default)": ["reid.checkpoint=imagenet"],
    "colour histogram": ["reid.descriptor=colour_histogram"],
}
ORACLE_PROBABILITIES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def ground_truth_person(table: TrackletTable, gt_dir: Path) -> np.ndarray:
    """(N,) the PETS id whose boxes overlap each tracklet's most often (IoU >= 0.5), -1 for none."""
    people = np.full(len(table), -1)
    gt = {camera.name: read_mot_txt(camera / "gt" / "gt.txt") for camera in gt_dir.iterdir() if camera.is_dir()}
    for index, camera in enumerate(table.camera):
        rows = gt[camera]
        votes: dict[int, int] = {}
        boxes = table.box_rows(index)
        for frame, (x0, y0, x1, y1) in zip(table.frames[boxes], table.boxes[boxes]):
            here = rows[rows[:, 0] == frame + 1]
            if len(here) == 0:
                continue
            gx0, gy0 = here[:, 2], here[:, 3]
            gx1, gy1 = gx0 + here[:, 4], gy0 + here[:, 5]
            inter = np.clip(np.minimum(x1, gx1) - np.maximum(x0, gx0), 0, None) * np.clip(np.minimum(y1, gy1) - np.maximum(y0, gy0), 0, None)
            iou = inter / ((x1 - x0) * (y1 - y0) + here[:, 4] * here[:, 5] - inter)
            best = int(np.argmax(iou))
            if iou[best] >= 0.5:
                votes[int(here[best, 1])] = votes.get(int(here[best, 1]), 0) + 1
        if votes:
            people[index] = max(votes, key=votes.get)
    return people


def link_quality(out_dir: Path, gt_dir: Path, person: np.ndarray, table: TrackletTable) -> dict:
    """Scores of the identities currently in out_dir."""
    report = evaluate_run(gt_dir, out_dir)
    document = json.loads((out_dir / "identities.json").read_text())
    identity_of = {(t["camera"], t["track_id"]): identity["id"] for identity in document["identities"] for t in identity["tracklets"]}
    identity = np.array([identity_of[key] for key in table.keys])
    camera = table.camera
    right = wrong = reentry_right = reentry_wrong = 0
    for i in range(len(table)):
        for j in range(i + 1, len(table)):
            if identity[i] == identity[j]:
                same = bool(person[i] == person[j] and person[i] >= 0)
                if camera[i] != camera[j]:
                    right, wrong = right + same, wrong + (not same)
                else:
                    reentry_right, reentry_wrong = reentry_right + same, reentry_wrong + (not same)
    kept = both = 0
    for who in set(person[camera == "cam_left"]) & set(person[camera == "cam_right"]) - {-1}:
        majority = []
        for name in ("cam_left", "cam_right"):
            rows = (person == who) & (camera == name)
            counts = {}
            for i in np.flatnonzero(rows):
                counts[identity[i]] = counts.get(identity[i], 0) + int(table.box_counts[i])
            majority.append(max(counts, key=counts.get))
        both += 1
        kept += majority[0] == majority[1]
    return {
        "multi_camera_idf1": float(report.multi_camera["idf1"]),
        "per_camera_idf1": {name: float(metrics["idf1"]) for name, metrics in report.per_camera.items()},
        "identities": document["summary"]["identities"],
        "cross_camera_links": {"right": int(right), "wrong": int(wrong), "precision": right / (right + wrong) if right + wrong else None},
        "people_kept_across_cameras": f"{kept} of {both}",
        # Pairs of one camera's tracklets put into one identity (re-entry), right when one person.
        "same_camera_pairs": {"right": int(reentry_right), "wrong": int(reentry_wrong)},
    }


def pair_auc(out_dir: Path, table: TrackletTable, person: np.ndarray, overrides: list[str]) -> dict:
    """ROC AUC of the default link log-odds over every cross-camera tracklet pair, and how calibrated the
    appearance evidence is there; the same AUC over each camera's pairs seen at different times
    (re-entry), with the highest link probabilities of its strangers and of its same-person pairs (each
    pair on its own, before any merge)."""
    config = load_config(None, overrides + ["device=cpu"])
    embedder = load_embedder(config.reid.checkpoint, "cpu", None, 128, config.reid.descriptor)
    embeddings = cache.load_embeddings(out_dir, len(table))
    descriptors = center_per_camera(embeddings.descriptors, table.camera_index)
    start, end = tracklet_seconds(table, CameraLayout.open(table.camera_names))
    a, b = np.triu_indices(len(table), k=1)
    same_camera = table.camera_index[a] == table.camera_index[b]
    apart = (end[a] <= start[b]) | (end[b] <= start[a])
    keep = (~same_camera | apart) & (person[a] >= 0) & (person[b] >= 0)
    a, b, same_camera = a[keep], b[keep], same_camera[keep]
    similarity = np.einsum("ij,ij->i", descriptors[a], descriptors[b])
    # Transit patterns are fitted per camera pair, so adding the same-camera pairs changes no
    # cross-camera pair's log-odds.
    log_odds = pair_log_odds(table, descriptors, a, b, similarity, start, end, math.inf, LinkSettings(),
                             embedder.calibration, learn_transit=True)
    same = person[a] == person[b]
    cross = ~same_camera
    # Is the appearance evidence calibrated on this footage? Over strangers, a calibrated likelihood
    # ratio averages 1; more means the model calls strangers alike more often than its calibration says.
    null = evidence.appearance_null(table, descriptors, start, end)
    appearance = evidence.appearance_log_lr(table, a[cross], b[cross], similarity[cross], null, embedder.calibration)
    probability = evidence.sigmoid(log_odds[same_camera])
    return {"cross_camera_pair_auc": float(roc_auc(log_odds[cross], same[cross])),
            "strangers_mean_appearance_likelihood_ratio": float(np.exp(appearance[~same[cross]]).mean()),
            "same_person_median_appearance_log_lr": float(np.median(appearance[same[cross]])),
            "reentry_pair_auc": float(roc_auc(log_odds[same_camera], same[same_camera])),
            "reentry_strangers_top_probabilities": np.sort(probability[~same[same_camera]])[::-1][:3].round(3).tolist(),
            "reentry_same_person_top_probabilities": np.sort(probability[same[same_camera]])[::-1][:3].round(3).tolist()}


def transit_p_value(out_dir: Path, table: TrackletTable, shuffles: int = 1999) -> dict:
    """Per camera pair, the permutation p-value of its transit cluster's evidence with `shuffles` shuffles
    of the match probabilities (the run itself draws up to 299 and lets at most 2 reach its evidence):
    how far from the test's 1-in-100 edge the learned pattern is. Shipped model, default link settings."""
    config, settings = load_config(None, ["device=cpu"]), LinkSettings()
    embedder = load_embedder(config.reid.checkpoint, "cpu", None, 128, config.reid.descriptor)
    embeddings = cache.load_embeddings(out_dir, len(table))
    if embeddings is None or embeddings.model_sha256 != model_identity(embedder)[1]:
        raise SystemExit(f"{out_dir}'s cached embeddings are not the shipped model's: relink with it first")
    descriptors = center_per_camera(embeddings.descriptors, table.camera_index)
    layout = CameraLayout.open(table.camera_names)
    start, end = tracklet_seconds(table, layout)
    a, b, distance = candidate_pairs(table, descriptors, start, end, settings, layout, "cpu")
    probability = evidence.sigmoid(pair_log_odds(table, descriptors, a, b, 1 - distance, start, end, math.inf, settings,
                                                 embedder.calibration, learn_transit=False))  # prior + appearance
    log_gaps = evidence.log_gap(evidence.signed_gaps(a, b, start, end))
    low = np.minimum(table.camera_index[a], table.camera_index[b])
    high = np.maximum(table.camera_index[a], table.camera_index[b])
    rng, result = np.random.default_rng(0), {}
    for key in sorted({(int(i), int(j)) for i, j in zip(low, high)}):
        rows = np.flatnonzero((low == key[0]) & (high == key[1]))
        rows = rows[np.argsort(-probability[rows], kind="stable")[:evidence.TRANSIT_FIT_PAIRS]]
        first, second = evidence.camera_pair_samples(table, key, start, end, rng, evidence.PAIRS_PER_CAMERA_PAIR)
        strangers = evidence.RandomGaps.of(evidence.log_gap(evidence.signed_gaps(first, second, start, end)))
        places = evidence.camera_pair_places(table, key, a[rows], b[rows], first, second, start, end)[2]
        shuffled = np.stack([rng.permutation(probability[rows]) for _ in range(shuffles)])
        observed, chance = evidence.permutation_evidence(log_gaps[rows], probability[rows], strangers, shuffled, places)
        reached = int((chance >= observed).sum())
        names = f"{table.camera_names[key[0]]} <-> {table.camera_names[key[1]]}"
        result[names] = {"shuffles_reaching_it": reached, "shuffles": shuffles, "p": (reached + 1) / (shuffles + 1)}
    return result


def descriptor_quality(out_dir: Path, gt_dir: Path, person: np.ndarray, table: TrackletTable, overrides: list[str]) -> dict:
    """link_quality of the default settings with this descriptor, its pair AUC and the oracle sweep."""
    relink_with(out_dir, overrides)
    row = link_quality(out_dir, gt_dir, person, table)
    row.update(pair_auc(out_dir, table, person, overrides))
    sweep = {}
    for probability in ORACLE_PROBABILITIES:
        relink_with(out_dir, overrides + [f"link.min_probability={probability}"])
        sweep[str(probability)] = float(evaluate_run(gt_dir, out_dir).multi_camera["idf1"])
    row["oracle_min_probability_sweep"] = sweep
    return row


def relink_with(out_dir: Path, overrides: list[str], corrections_path: Path | None = None) -> None:
    relink(out_dir, load_config(None, overrides + ["device=cpu", "export.video=false"]), show_progress=False,
           corrections_path=corrections_path)


def oracle_reentry_corrections(table: TrackletTable, person: np.ndarray, path: Path) -> Path:
    """A corrections file that joins, within each camera, each ground-truth person's tracklets one after
    the other (where they do not overlap in frames): what perfect re-entry linking would give, an upper
    bound and not a result."""
    same = []
    for camera in table.camera_names:
        for who in sorted(set(person[(table.camera == camera) & (person >= 0)].tolist())):
            rows = sorted(np.flatnonzero((table.camera == camera) & (person == who)), key=lambda row: table.first_frame[row])
            chain_end = rows[0]
            for row in rows[1:]:
                if table.last_frame[chain_end] < table.first_frame[row]:
                    same.append([f"{camera}:{table.track_id[chain_end]}", f"{camera}:{table.track_id[row]}"])
                    chain_end = row
    path.write_text(yaml.safe_dump({"same": same}))
    return path


def without_filled_boxes(out_dir: Path, gt_dir: Path, person: np.ndarray, table: TrackletTable) -> dict:
    """link_quality of the default run as it would be with `tracklets.fill_gaps: false`: the same
    identities with the filled-in boxes (confidence 0) left out. Filling adds boxes and changes nothing
    else (crops, spans and so links are the same), so this is that run, scored without re-tracking."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / out_dir.name
        (copy / "global").mkdir(parents=True)
        shutil.copy(out_dir / "identities.json", copy / "identities.json")
        for camera in table.camera_names:
            rows = read_mot_txt(out_dir / "global" / f"{camera}.txt")
            write_mot_txt(copy / "global" / f"{camera}.txt", rows[rows[:, 6] > 0])
        return link_quality(copy, gt_dir, person, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPOSITORY / "bench" / "results" / "linking")
    parser.add_argument("--reuse", action="store_true", help="re-use the tracking runs already in --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    gt_dir = args.out / "gt"
    write_sample_ground_truth(gt_dir)
    footage = {"sample": SAMPLE_DIR, "hue_rotated_cam_right": args.out / "stress_videos"}
    if not (args.reuse and footage["hue_rotated_cam_right"].is_dir()):
        make_hue_rotated_copy(SAMPLE_DIR, footage["hue_rotated_cam_right"])
    results = {}
    for name, videos in footage.items():
        out_dir = args.out / name
        if not (args.reuse and (out_dir / "identities.json").is_file()):
            print(f"cctrack run on {name} ...", flush=True)
            run(videos, out_dir, load_config(None, ["export.video=false", "device=cpu"]), show_progress=False)
        table = cache.load_tracklets(out_dir, cache.load_run_info(out_dir))
        person = ground_truth_person(table, gt_dir)
        rows = {descriptor: descriptor_quality(out_dir, gt_dir, person, table, overrides)
                for descriptor, overrides in DESCRIPTORS.items()}
        relink_with(out_dir, [])  # the cache holds the embeddings of the last descriptor scored
        rows["shipped CSSC-MobileNetV2"]["transit_permutation_p"] = transit_p_value(out_dir, table)
        relink_with(out_dir, ["link.distance_threshold=1e-9"])
        rows["no linking"] = link_quality(out_dir, gt_dir, person, table)
        oracle = oracle_reentry_corrections(table, person, args.out / f"{name}_oracle_reentry.yaml")
        relink_with(out_dir, ["link.distance_threshold=1e-9"], oracle)
        rows["oracle re-entry, no cross-camera links"] = link_quality(out_dir, gt_dir, person, table)
        relink_with(out_dir, [])  # leave the folder as the default run makes it
        rows["shipped CSSC-MobileNetV2, no gap filling"] = without_filled_boxes(out_dir, gt_dir, person, table)
        results[name] = rows
        print(f"\n{name}: {len(table)} tracklets")
        print_rows(rows)
        for cameras, test in rows["shipped CSSC-MobileNetV2"]["transit_permutation_p"].items():
            print(f"transit {cameras}: {test['shuffles_reaching_it']} of {test['shuffles']} shuffles reach its evidence, p = {test['p']:.4f}")
        shipped = rows["shipped CSSC-MobileNetV2"]
        print(f"re-entry pairs (shipped): AUC {shipped['reentry_pair_auc']:.3f}, highest probabilities of strangers "
              f"{shipped['reentry_strangers_top_probabilities']}, of one person {shipped['reentry_same_person_top_probabilities']}")
    write_record(args.out.parent / "linking.json", {"results": results})


def print_rows(rows: dict[str, dict]) -> None:
    """One line of identity figures per row (link_quality's dict, with AUC and the oracle sweep when present)."""
    print(f"{'':38s}{'mcIDF1':>8s}{'left':>7s}{'right':>7s}{'kept':>9s}{'links ok/bad':>14s}{'re-entry':>10s}{'AUC':>7s}{'oracle':>8s}")
    for label, row in rows.items():
        links = row["cross_camera_links"]
        auc = row.get("cross_camera_pair_auc")
        oracle = max(row["oracle_min_probability_sweep"].values()) if "oracle_min_probability_sweep" in row else None
        print(f"{label:38s}{row['multi_camera_idf1']:8.3f}{row['per_camera_idf1']['cam_left']:7.3f}"
              f"{row['per_camera_idf1']['cam_right']:7.3f}{row['people_kept_across_cameras']:>9s}"
              f"{links['right']:>7d}/{links['wrong']:<6d}"
              f"{row['same_camera_pairs']['right']:>5d}/{row['same_camera_pairs']['wrong']:<4d}{'' if auc is None else f'{auc:7.3f}':>7s}"
              f"{'' if oracle is None else f'{oracle:8.3f}':>8s}")


if __name__ == "__main__":
    main()
