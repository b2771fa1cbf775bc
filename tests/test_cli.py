"""`cctrack run` / `cctrack link` end to end on a real slice of the sample, and every bad input."""

from __future__ import annotations

import errno
import importlib.metadata
import json
import re
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cctrack.cli import app
from cctrack.cache import load_run_info, load_tracklets
from cctrack.errors import CctrackError
from cctrack.export import check_crops_present, validate_identities
from cctrack.mot import read_mot_txt
from cctrack.pipeline import RunSummary
from tests.conftest import frame_count, numbered_cameras, read_mosaic, read_sample_frames, shared_pets_gt_path, write_video

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).exists() else []


@pytest.fixture(scope="module")
def crossing_sample(tmp_path_factory) -> Path:
    """Sample frames 101-230 of both cameras: people 16 and 17 walk from cam_right into cam_left."""
    folder = tmp_path_factory.mktemp("crossing")
    for camera in ("cam_left", "cam_right"):
        write_video(folder / f"{camera}.mp4", read_sample_frames(camera, 130, start=100))
    return folder


@pytest.fixture(scope="module")
def finished_run(crossing_sample, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    result = invoke("run", crossing_sample, "--out", out, "--stride", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert "identities seen in more than one camera" in result.stdout
    return out


def test_run_and_link_write_the_report_and_a_relink_drops_a_stale_evaluation(finished_run, tmp_path):
    assert (finished_run / "report.html").is_file() and "report.html" in (finished_run / "summary.txt").read_text()
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    (out / "report.html").unlink()
    (out / "eval.json").write_text("{}")  # scored the identities a re-link replaces
    result = invoke("link", out, "--no-video", "--set", "link.min_probability=0.99", "--quiet")
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file() and not (out / "eval.json").exists()


def test_run_writes_every_output(finished_run):
    out = finished_run
    for name in ["identities.json", "summary.txt", "tracks/cam_left.txt", "tracks/cam_right.txt", "global/cam_left.txt",
                 "global/cam_right.txt", "videos/cam_left.mp4", "videos/cam_right.mp4", "videos/mosaic.mp4"]:
        assert (out / name).is_file(), name
    assert not [p for p in files_under(out) if ".tmp" in p.name]


def test_run_tracks_have_a_box_in_every_processed_frame_detected_or_filled(finished_run):
    """The run used --stride 2: each track covers frames 1, 3, 5, ... of its span without a hole; boxes
    the detector missed were interpolated by the tracklet stage (confidence 0), the rest are detections."""
    rows = np.concatenate([read_mot_txt(finished_run / "tracks" / f"{camera}.txt") for camera in ("cam_left", "cam_right")])
    assert len(rows) > 100 and np.all(rows[:, 0] % 2 == 1)
    table = load_tracklets(finished_run, load_run_info(finished_run))
    for row in range(len(table)):
        frames = table.frames[table.box_offsets[row]:table.box_offsets[row + 1]]
        assert np.all(np.diff(frames) == 2)
    detected = rows[:, 6] > 0
    assert detected.mean() > 0.8 and np.all((rows[:, 6] == 0) | (rows[:, 6] >= 0.1))  # 0.1: detector.min_score


def test_identities_json_follows_the_schema_and_links_someone_across_cameras(finished_run):
    document = json.loads((finished_run / "identities.json").read_text())
    validate_identities(document)
    assert [c["name"] for c in document["run"]["cameras"]] == ["cam_left", "cam_right"]
    assert all(c["fps"] == 10.0 and c["frames_processed"] == 65 and c["last_frame"] == 129 for c in document["run"]["cameras"])
    assert document["run"]["models"]["reid"]["dim"] == 1280
    assert "mobilenetv2" in document["run"]["models"]["reid"]["description"]
    # detector.image_size: auto was resolved once, from the footage, and the record names the size and runtime.
    detector = document["run"]["models"]["detector"]["description"]
    assert re.search(r"at (640|960|1280) px \(openvino runtime, batch 1\)", detector), detector
    size = json.loads((finished_run / "cache" / "run.json").read_text())["config"]["detector"]["image_size"]
    assert f"at {size} px" in detector
    assert document["summary"]["multi_camera_identities"] >= 1
    assert isinstance(document["transit"], list)  # learned transit times; the schema checked their fields
    both = [i for i in document["identities"] if len(i["cameras"]) == 2]
    assert both and all(len(i["tracklets"]) >= 2 for i in both)
    for identity in document["identities"]:
        for tracklet in identity["tracklets"]:
            assert (finished_run / tracklet["crop"]).is_file()
            assert tracklet["first_seconds"] == pytest.approx((tracklet["first_frame"] - 1) / 10.0)


def test_mot_files_are_one_based_with_global_ids(finished_run):
    document = json.loads((finished_run / "identities.json").read_text())
    global_ids = {i["id"] for i in document["identities"]}
    local = np.loadtxt(finished_run / "tracks" / "cam_right.txt", delimiter=",", ndmin=2)
    merged = np.loadtxt(finished_run / "global" / "cam_right.txt", delimiter=",", ndmin=2)
    assert local.shape == merged.shape and local.shape[1] == 10
    assert local[:, 0].min() >= 1 and local[:, 0].max() <= 129
    assert set((local[:, 0] - 1) % 2) == {0}  # stride 2: frames 1, 3, 5, ...
    assert set(merged[:, 1].astype(int)) <= global_ids
    assert (local[:, 4] > 0).all() and (local[:, 5] > 0).all()
    assert (local[:, 7:] == -1).all()


def test_annotated_videos_are_readable_with_the_processed_frame_count(finished_run):
    for name, width in [("cam_left", 320), ("mosaic", 640)]:
        capture = cv2.VideoCapture(str(finished_run / "videos" / f"{name}.mp4"))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 65
        assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == width
        capture.release()


def test_link_relinks_from_the_cache_without_the_videos(finished_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    # A tiny threshold links nothing: every tracklet becomes its own identity.
    result = invoke("link", out, "--no-video", "--set", "link.distance_threshold=0.000001", "--quiet")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "identities.json").read_text())
    assert document["summary"]["identities"] == document["summary"]["tracklets"]
    assert document["summary"]["multi_camera_identities"] == 0


def test_link_with_the_imagenet_baseline_re_embeds_and_says_so(finished_run, tmp_path):
    out = tmp_path / "baseline"
    shutil.copytree(finished_run, out)
    default = json.loads((finished_run / "identities.json").read_text())
    assert "cssc_cuhk03_mobilenetv2.pt" in default["run"]["models"]["reid"]["description"]
    result = invoke("link", out, "--no-video", "--reid-checkpoint", "imagenet", "--quiet")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "identities.json").read_text())
    assert "ImageNet backbone" in document["run"]["models"]["reid"]["description"]
    assert document["run"]["models"]["reid"]["sha256"] != default["run"]["models"]["reid"]["sha256"]
    assert all(0.9 <= link["confidence"] <= 1 for link in document["links"])  # probabilities at min_probability


def test_adapt_fine_tunes_on_the_run_and_relinks_with_the_adapted_model(finished_run, tmp_path):
    from reid.checkpoint import load_checkpoint
    from reid.pretrained import DEFAULT_WEIGHTS_SHA256, sha256_of_file

    out = tmp_path / "adapt"
    shutil.copytree(finished_run, out)
    result = invoke("adapt", out, "--steps", "2", "--no-video", "--quiet")
    assert result.exit_code == 0, result.output
    assert "adapted CSSC-mobilenetv2" in result.stdout and "identities:" in result.stdout
    weights = out / "adapted.pt"
    payload = load_checkpoint(weights)
    assert payload["extra"]["adapted_from"]["sha256"] == DEFAULT_WEIGHTS_SHA256
    assert payload["extra"]["calibration"]["curve_log_lr"]  # a calibration of its own, carried over
    document = json.loads((out / "identities.json").read_text())
    validate_identities(document)
    reid = document["run"]["models"]["reid"]
    assert reid["path"] == str(weights.resolve()) and reid["sha256"] == sha256_of_file(weights)
    # The cached embeddings are the adapted model's, so a re-link with it does not re-embed.
    cached = out / "cache" / "embeddings.npz"
    written = cached.stat().st_mtime_ns
    relinked = invoke("link", out, "--no-video", "--reid-checkpoint", weights, "--quiet")
    assert relinked.exit_code == 0 and cached.stat().st_mtime_ns == written


def test_run_with_adapt_draws_the_videos_once_with_the_adapted_identities(crossing_sample, finished_run, tmp_path, monkeypatch):
    import cctrack.pipeline

    out = tmp_path / "adapt"
    shutil.copytree(finished_run, out)  # the same videos: tracking is re-used, the rest is done again
    shutil.rmtree(out / "videos")
    drawn = []
    real = cctrack.pipeline._write_videos
    monkeypatch.setattr(cctrack.pipeline, "_write_videos",
                        lambda job, *args: drawn.append(job.config.reid.checkpoint) or real(job, *args))
    counted = []  # the free-space check before tracking counts the videos drawn at the end
    monkeypatch.setattr(cctrack.pipeline, "space_warning", lambda out_dir, cameras, seconds, video: counted.append(video))
    result = invoke("run", crossing_sample, "--out", out, "--stride", "2", "--adapt", "--adapt-steps", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert "before adapting:" in result.stdout and "adapted CSSC-mobilenetv2" in result.stdout
    weights = out / "adapted.pt"
    assert drawn == [str(weights)] and counted == [True]  # once, by the re-link with the adapted model
    assert [frame_count(out / "videos" / f"{name}.mp4") for name in ("cam_left", "cam_right")] == [65, 65]
    reid = json.loads((out / "identities.json").read_text())["run"]["models"]["reid"]
    assert reid["path"] == str(weights.resolve())


def test_run_with_adapt_that_fails_still_draws_the_run_s_videos(crossing_sample, finished_run, tmp_path, monkeypatch):
    import cctrack.adapt

    out = tmp_path / "adapt"
    shutil.copytree(finished_run, out)
    shutil.rmtree(out / "videos")

    def too_few(table, descriptors):
        raise cctrack.adapt.CctrackError("adapt needs at least 10 stranger pairs")

    monkeypatch.setattr(cctrack.adapt, "stranger_similarity", too_few)
    result = invoke("run", crossing_sample, "--out", out, "--stride", "2", "--adapt", "--adapt-steps", "1", "--quiet")
    assert result.exit_code == 2 and "error: adapt needs at least 10 stranger pairs" in result.output
    assert not (out / "adapted.pt").exists()
    assert [frame_count(out / "videos" / f"{name}.mp4") for name in ("cam_left", "cam_right")] == [65, 65]
    reid = json.loads((out / "identities.json").read_text())["run"]["models"]["reid"]
    assert "adapted" not in reid["path"]


@pytest.mark.parametrize("flags, message", [
    (["--adapt", "--no-link"], "--adapt needs linking"),
    (["--adapt", "--reid-checkpoint", "imagenet"], "baselines cannot be adapted"),
    (["--adapt", "--set", "reid.descriptor=colour_histogram"], "baselines cannot be adapted"),
    (["--adapt-rounds", "2"], "need --adapt"),
])
def test_run_refuses_adapt_settings_it_cannot_use_before_any_work(crossing_sample, tmp_path, flags, message):
    out = tmp_path / "out"
    result = invoke("run", crossing_sample, "--out", out, *flags, "--quiet")
    assert result.exit_code == 2 and message in result.output
    assert not out.exists()


def test_adapt_trains_on_a_person_s_corrections(finished_run, tmp_path):
    import re

    document = json.loads((finished_run / "identities.json").read_text())
    # `same`: two tracklets the model left alone, seen one after the other; `different`: a pair of two cameras
    # the model did not join (not already a known negative, as two tracklets of one camera at once are).
    single = [i["tracklets"][0] for i in document["identities"] if len(i["tracklets"]) == 1]
    a, b = next((a, b) for a in single for b in single if a["camera"] == b["camera"] and a["last_frame"] < b["first_frame"])
    identity_of = {(t["camera"], t["track_id"]): i["id"] for i in document["identities"] for t in i["tracklets"]}
    c, d = next((c, d) for c in identity_of for d in identity_of if c[0] != d[0] and identity_of[c] != identity_of[d])
    counts = []
    given = (f"same: [[{a['camera']}:{a['track_id']}, {b['camera']}:{b['track_id']}]]\n"
             f"different: [[{c[0]}:{c[1]}, {d[0]}:{d[1]}]]\n")
    # None, in OUT_DIR/corrections.yaml, and in a file of one's own given with --corrections.
    for corrections, own_file in (("", False), (given, False), (given, True)):
        out = tmp_path / f"adapt{len(counts)}"
        shutil.copytree(finished_run, out)
        (out / "corrections.yaml").unlink(missing_ok=True)
        flags = []
        if own_file:
            (tmp_path / "mine.yaml").write_text(corrections)
            flags = ["--corrections", tmp_path / "mine.yaml"]
        elif corrections:
            (out / "corrections.yaml").write_text(corrections)
        result = invoke("adapt", out, "--steps", "1", "--no-video", "--quiet", *flags)
        assert result.exit_code == 0, result.output
        groups, negatives = re.search(r"on (\d+) tracklet groups, (\d+) known different pairs", result.stdout).groups()
        counts.append((int(groups), int(negatives)))
        if corrections:  # the relink keeps the correction
            links = json.loads((out / "identities.json").read_text())["links"]
            assert any(link["source"] == "person" for link in links)
            from cctrack.report import report_data  # and the report says who made it

            assert any(row[7] == "person" for identity in report_data(out)["identities"] for row in identity["links"])
    (groups_plain, negatives_plain), (groups_corrected, negatives_corrected), own_file_counts = counts
    assert own_file_counts == (groups_corrected, negatives_corrected)
    assert negatives_corrected == negatives_plain + 1  # the `different` pair is a known negative
    assert groups_corrected == groups_plain - 1  # the `same` pair is one person: two groups become one


def test_adapt_refuses_baselines_and_folders_without_a_run(finished_run, tmp_path):
    out = tmp_path / "adapt"
    shutil.copytree(finished_run, out)
    before = {p: p.stat().st_mtime_ns for p in files_under(out)}
    for args, message in (((out, "--reid-checkpoint", "imagenet"), "cannot be adapted"),
                          ((tmp_path / "empty",), "no cache in")):
        result = invoke("adapt", *args, "--steps", "1", "--quiet")
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
    assert {p: p.stat().st_mtime_ns for p in files_under(out)} == before


def test_crops_export_as_a_reid_folder_dataset(finished_run, tmp_path):
    from reid.datasets import load_folder

    result = invoke("export-dataset", finished_run, tmp_path / "dataset")
    assert result.exit_code == 0, result.output
    document = json.loads((finished_run / "identities.json").read_text())
    dataset = load_folder(tmp_path / "dataset", train_fraction=1.0)
    assert dataset.num_train_ids == document["summary"]["identities"]
    assert {sample.camid for sample in dataset.train} == {0, 1}  # cam-left, cam-right
    assert len(dataset.train) == len(list(finished_run.glob("crops/*/*.jpg")))
    again = invoke("export-dataset", finished_run, tmp_path / "dataset")
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_link_rejects_a_corrupt_cache(finished_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    (out / "cache" / "tracklets.npz").write_bytes(b"PK\x03\x04 broken")
    before = {p: p.stat().st_mtime_ns for p in files_under(out)}
    result = invoke("link", out, "--quiet")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: corrupt cache") and len(result.stderr.strip().splitlines()) == 1
    assert {p: p.stat().st_mtime_ns for p in files_under(out)} == before


def test_link_rejects_cached_embeddings_of_another_dimension(finished_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    path = out / "cache" / "embeddings.npz"
    with np.load(path) as cached:
        arrays = dict(cached)
    arrays["crop_embeddings"] = np.zeros((len(arrays["crop_embeddings"]), 2048), np.float32)
    arrays["descriptors"] = np.zeros((len(arrays["descriptors"]), 2048), np.float32)
    np.savez(path, **arrays)
    result = invoke("link", out, "--quiet")
    assert result.exit_code == 2
    assert "2048-d" in result.stderr and "1280-d" in result.stderr


def _cached_embeddings(out: Path) -> dict[str, np.ndarray]:
    with np.load(out / "cache" / "embeddings.npz") as cached:
        return dict(cached)


def test_relink_re_embedding_the_cached_crops_gives_the_run_s_descriptors(finished_run, tmp_path):
    """The run embeds its crops as decoded from the JPEGs it writes (most in the background while tracking,
    cctrack.embed_worker): the pixels a re-link re-embeds, one tracklet per call, so the same bits."""
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    from_run = _cached_embeddings(out)
    (out / "cache" / "embeddings.npz").unlink()
    result = invoke("link", out, "--no-video", "--quiet")
    assert result.exit_code == 0, result.output
    re_embedded = _cached_embeddings(out)
    assert str(re_embedded["model_sha256"]) == str(from_run["model_sha256"])
    assert np.array_equal(re_embedded["crop_embeddings"], from_run["crop_embeddings"])
    assert np.array_equal(re_embedded["descriptors"], from_run["descriptors"])
    identities = [json.loads((folder / "identities.json").read_text())["identities"] for folder in (finished_run, out)]
    assert identities[0] == identities[1]


def test_relink_with_a_changed_crop_re_embeds_it_from_the_disk(finished_run, tmp_path):
    """Without cached embeddings, `cctrack link` embeds the crops in crops/: change one, and only its
    embedding changes."""
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    from_run = _cached_embeddings(out)
    camera, track_id = load_tracklets(out, load_run_info(out)).keys[0]
    crop = out / "crops" / camera / f"{track_id:05d}_0.jpg"
    cv2.imwrite(str(crop), np.full_like(cv2.imread(str(crop)), 128))  # a grey crop: nobody
    (out / "cache" / "embeddings.npz").unlink()
    result = invoke("link", out, "--no-video", "--quiet")
    assert result.exit_code == 0, result.output
    re_embedded = _cached_embeddings(out)
    assert float(re_embedded["crop_embeddings"][0] @ from_run["crop_embeddings"][0]) < 0.9  # row 0: that crop
    np.testing.assert_allclose(re_embedded["crop_embeddings"][1:], from_run["crop_embeddings"][1:], rtol=0, atol=1e-6)


def test_identities_json_gives_times_on_the_camera_s_clock_and_on_the_shared_clock(finished_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    config = tmp_path / "offset.yaml"
    config.write_text("layout:\n  cameras:\n    cam_right: {time_offset_seconds: -2.5}\n")
    result = invoke("link", out, "--config", config, "--no-video", "--quiet")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "identities.json").read_text())
    validate_identities(document)
    assert document["schema_version"] == "1.5"
    offset = {"cam_left": 0.0, "cam_right": -2.5}
    for identity in document["identities"]:
        tracklets = identity["tracklets"]
        for tracklet in tracklets:
            for end in ("first", "last"):
                own = (tracklet[f"{end}_frame"] - 1) / 10.0
                assert tracklet[f"{end}_seconds"] == pytest.approx(own)
                assert tracklet[f"{end}_shared_seconds"] == pytest.approx(own + offset[tracklet["camera"]])
        shared_starts = [t["first_shared_seconds"] for t in tracklets]
        assert shared_starts == sorted(shared_starts)
        assert identity["first_shared_seconds"] == shared_starts[0]
        assert identity["last_shared_seconds"] == max(t["last_shared_seconds"] for t in tracklets)
    # Identities are numbered by first appearance on the shared clock, the one linking used.
    firsts = [identity["first_shared_seconds"] for identity in document["identities"]]
    assert firsts == sorted(firsts) and any(value < 0 for value in firsts)


def test_device_flag_reaches_the_detector_the_embedder_and_the_linker(crossing_sample, tmp_path, monkeypatch):
    """`--device cpu` where a GPU is present (pretended: torch says CUDA is available) puts every stage on
    the CPU; a stage that resolved its own "auto" would pick the GPU."""
    import inspect

    import torch
    from cctrack import link
    from cctrack.detect import PersonDetector
    from reid.embedder import Embedder

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seen: dict[str, str] = {}
    real_detect, real_embed, real_pairs = PersonDetector.detect, Embedder.embed, link.candidate_pairs

    def detect(self, frames):
        seen["detector"] = str(self.device)
        return real_detect(self, frames)

    def embed(self, crops, *args, **kwargs):
        seen["embedder"] = str(self.device)
        return real_embed(self, crops, *args, **kwargs)

    def candidate_pairs(*args, **kwargs):
        call = inspect.signature(real_pairs).bind(*args, **kwargs)
        call.apply_defaults()
        seen["linker"] = str(call.arguments.get("device"))
        return real_pairs(*args, **kwargs)

    monkeypatch.setattr(PersonDetector, "detect", detect)
    monkeypatch.setattr(Embedder, "embed", embed)
    monkeypatch.setattr(link, "candidate_pairs", candidate_pairs)
    result = invoke("run", crossing_sample, "--out", tmp_path / "out", "--device", "cpu", "--max-frames", "6", "--no-video", "--quiet")
    assert result.exit_code == 0, result.output
    assert seen == {"detector": "cpu", "embedder": "cpu", "linker": "cpu"}
    assert json.loads((tmp_path / "out" / "identities.json").read_text())["run"]["config"]["device"] == "cpu"


def test_a_cache_of_another_version_is_refused_saying_what_to_do_even_under_python_O(finished_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    run_json = out / "cache" / "run.json"
    run_json.write_text(json.dumps(json.loads(run_json.read_text()) | {"cache_version": 0}))
    expected = f"cache {run_json} has version 0 but this cctrack reads version 1: re-run `cctrack run` to rebuild it, or use the cctrack that wrote it"
    assert one_error_line(invoke("link", out, "--quiet")) == f"error: {expected}"
    # `python -O` drops assert statements: the check must not be one.
    script = "import sys; from cctrack.cache import load_run_info; from cctrack.errors import CctrackError\n" \
             "try:\n    load_run_info(sys.argv[1])\nexcept CctrackError as error:\n    print(error)"
    done = subprocess.run([sys.executable, "-O", "-c", script, str(out)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.stdout.strip() == expected, done.stderr


@pytest.mark.parametrize(
    "layout, message",
    [
        ("layout:\n  cameras:\n    lobby: {time_offset_seconds: 1}\n", "unknown camera 'lobby'"),
        (
            "layout:\n  connections:\n    - {from: cam_left, to: cam_right, min_transit_seconds: 30, max_transit_seconds: 10}\n",
            "contradictory transit bounds",
        ),
    ],
    ids=["unknown-camera", "contradictory-transit"],
)
def test_bad_layouts_are_rejected_by_run_and_link(finished_run, crossing_sample, tmp_path, layout, message):
    config = tmp_path / "layout.yaml"
    config.write_text(layout)
    result = invoke("run", crossing_sample, "--out", tmp_path / "out", "--config", config, "--quiet")
    assert result.exit_code == 2 and message in result.stderr
    assert files_under(tmp_path / "out") == []
    result = invoke("link", finished_run, "--config", config, "--quiet")
    assert result.exit_code == 2 and message in result.stderr


def test_camera_without_people_is_not_an_error(tmp_path):
    rng = np.random.default_rng(0)
    wall = [np.clip(120 + rng.normal(0, 3, (240, 320, 3)), 0, 255).astype(np.uint8) for _ in range(6)]
    (tmp_path / "cams").mkdir()
    write_video(tmp_path / "cams" / "empty_corridor.mp4", wall)
    result = invoke("run", tmp_path / "cams", "--out", tmp_path / "out", "--no-video", "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "tracks" / "empty_corridor.txt").read_text() == ""
    document = json.loads((tmp_path / "out" / "identities.json").read_text())
    validate_identities(document)
    assert document["summary"]["identities"] == 0
    assert "identities: 0 (no people found)" in result.stdout.splitlines()


def _folder_with(tmp_path: Path, name: str, content: bytes) -> Path:
    folder = tmp_path / "cams"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(content)
    return folder


def _file_with(tmp_path: Path, name: str, content: bytes) -> Path:
    (tmp_path / name).write_bytes(content)
    return tmp_path / name


def _truncated_video(tmp_path: Path) -> Path:
    source = write_video(tmp_path / "whole.mp4", read_sample_frames("cam_left", 20))
    return _folder_with(tmp_path, "cam.mp4", source.read_bytes()[: source.stat().st_size // 2])


def _zero_frame_video(tmp_path: Path) -> Path:
    folder = tmp_path / "cams"
    folder.mkdir()
    writer = cv2.VideoWriter(str(folder / "cam.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 64))
    writer.release()
    return folder


BAD_INPUTS = {
    "missing-folder": (lambda tmp, sample: (tmp / "nope", []), "video folder not found"),
    "empty-folder": (lambda tmp, sample: ((tmp / "cams").mkdir() or tmp / "cams", []), "video folder is empty"),
    "non-video-file": (lambda tmp, sample: (_folder_with(tmp, "notes.txt", b"hello"), []), "not a video"),
    # OpenCV cannot open an mp4 without its index (moov atom): what a cut-off or never-written recording is.
    "truncated-video": (lambda tmp, sample: (_truncated_video(tmp), []), "cannot open video VIDEO_DIR/cam.mp4: corrupt, truncated or unsupported codec"),
    "zero-frame-video": (lambda tmp, sample: (_zero_frame_video(tmp), []), "cannot open video VIDEO_DIR/cam.mp4: corrupt, truncated or unsupported codec"),
    "missing-weights": (lambda tmp, sample: (sample, ["--detector-weights", str(tmp / "yolo.pt")]), "detector weights not found"),
    "missing-reid-checkpoint": (lambda tmp, sample: (sample, ["--reid-checkpoint", str(tmp / "cssc.pt")]), "checkpoint not found"),
    "random-bytes-reid-checkpoint": (
        lambda tmp, sample: (sample, ["--reid-checkpoint", str(_file_with(tmp, "noise.pt", bytes(range(256)) * 64))]),
        "noise.pt is corrupt or truncated, or not a cctrack/reid weights file (UnpicklingError)",
    ),
    "pickle-reid-checkpoint": (
        lambda tmp, sample: (sample, ["--reid-checkpoint", str(_file_with(tmp, "model.pkl", pickle.dumps({"format": Path("x")})))]),
        "model.pkl is corrupt or truncated, or not a cctrack/reid weights file (UnpicklingError)",
    ),
    "bad-config-key": (lambda tmp, sample: (sample, ["--set", "detector.imgsz=640"]), "unknown key detector.imgsz"),
    "old-device-key": (lambda tmp, sample: (sample, ["--set", "reid.device=cpu"]), "config: reid.device was removed: the device is one top-level setting"),
    "bad-device": (lambda tmp, sample: (sample, ["--device", "gpu"]), "unknown device 'gpu'"),
    "bad-config-value": (lambda tmp, sample: (sample, ["--set", "tracker.lost_track_seconds=-2"]), "lost_track_seconds"),
    "zero-max-seconds": (lambda tmp, sample: (sample, ["--max-seconds", "0"]), "video.max_seconds must be > 0 or null, got 0.0"),
    "max-seconds-under-a-frame": (
        lambda tmp, sample: (sample, ["--max-seconds", "0.05"]),
        "--max-seconds 0.05 (video.max_seconds) gives no frame of camera cam_left (10 fps)",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_one_clear_line_and_writes_nothing(case, crossing_sample, tmp_path):
    make, message = BAD_INPUTS[case]
    video_dir, extra = make(tmp_path, crossing_sample)
    out = tmp_path / "out"
    result = invoke("run", video_dir, "--out", out, "--quiet", "--max-frames", "4", *extra)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    message = message.replace("VIDEO_DIR", str(video_dir))
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "weights_only" not in result.stderr  # never suggest loading a foreign pickle unsafely
    assert files_under(out) == []


def test_unwritable_output_folder_is_a_clear_error_and_writes_nothing(crossing_sample, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should go")
    inputs = {p: p.stat().st_mtime_ns for p in files_under(crossing_sample)}
    result = invoke("run", crossing_sample, "--out", blocker / "out", "--quiet")
    assert one_error_line(result) == f"error: output folder {blocker / 'out'} is not writable: Not a directory"
    assert files_under(tmp_path) == [blocker] and blocker.read_text() == "a file where the output folder should go"
    assert {p: p.stat().st_mtime_ns for p in files_under(crossing_sample)} == inputs


def write_sample_gt(gt: Path) -> Path:
    shared_pets_gt_path()  # fails saying what is missing when ../shared is not beside the checkout
    result = invoke("sample-gt", gt)
    assert result.exit_code == 0, result.output
    return gt


def test_eval_command_scores_a_known_answer_and_writes_json(tmp_path):
    """The sample's own ground truth as the prediction scores 1.0; swapping two people's global ids in one
    camera keeps that camera perfect but lowers the multi-camera IDF1."""
    gt = write_sample_gt(tmp_path / "gt")
    perfect = tmp_path / "perfect"
    swapped = tmp_path / "swapped"
    for camera in ("cam_left", "cam_right"):
        rows = np.loadtxt(gt / camera / "gt" / "gt.txt", delimiter=",")
        for folder in (perfect, swapped):
            (folder / "global").mkdir(parents=True, exist_ok=True)
        np.savetxt(perfect / "global" / f"{camera}.txt", rows, delimiter=",", fmt="%g")
        if camera == "cam_left":
            ids = rows[:, 1].copy()
            rows[ids == 16, 1], rows[ids == 17, 1] = 17, 16
        np.savetxt(swapped / "global" / f"{camera}.txt", rows, delimiter=",", fmt="%g")
    result = invoke("eval", "--gt", gt, "--pred", perfect)
    assert result.exit_code == 0, result.output
    assert "multi-camera" in result.stdout
    metrics = json.loads((perfect / "eval.json").read_text())
    assert metrics["multi_camera"]["idf1"] == pytest.approx(1.0)
    assert metrics["per_camera"]["cam_left"]["mota"] == pytest.approx(1.0)
    result = invoke("eval", "--gt", gt, "--pred", swapped, "--json", tmp_path / "swapped.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "swapped.json").read_text())
    assert metrics["per_camera"]["cam_left"]["idf1"] == pytest.approx(1.0)
    assert metrics["multi_camera"]["idf1"] < 0.99


def test_eval_names_a_camera_missing_from_the_predictions(tmp_path):
    gt = write_sample_gt(tmp_path / "gt")
    (tmp_path / "pred" / "global").mkdir(parents=True)
    (tmp_path / "pred" / "global" / "cam_left.txt").write_text("")
    result = invoke("eval", "--gt", gt, "--pred", tmp_path / "pred")
    assert result.exit_code == 2 and "cam_right" in result.stderr


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _perfect_prediction(tmp_path: Path) -> tuple[Path, Path]:
    gt = write_sample_gt(tmp_path / "gt")
    pred = tmp_path / "pred"
    (pred / "global").mkdir(parents=True)
    for camera in ("cam_left", "cam_right"):
        shutil.copyfile(gt / camera / "gt" / "gt.txt", pred / "global" / f"{camera}.txt")
    return gt, pred


def test_eval_json_onto_a_folder_or_under_a_file_is_one_line(tmp_path):
    gt, pred = _perfect_prediction(tmp_path)
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("")
    for target, reason in ((tmp_path / "a_folder", "Is a directory"), (tmp_path / "a_file" / "m.json", f"{tmp_path / 'a_file'} is a file, not a folder")):
        result = invoke("eval", "--gt", gt, "--pred", pred, "--json", target)
        assert one_error_line(result) == f"error: cannot write {target}: {reason}"
        assert result.stdout == ""  # no table that looks like success above the error
    assert not [p for p in files_under(tmp_path) if ".tmp" in p.name]


def test_eval_on_empty_ground_truth_says_so(tmp_path):
    gt, pred = _perfect_prediction(tmp_path)
    (gt / "cam_right" / "gt" / "gt.txt").write_text("")
    result = invoke("eval", "--gt", gt, "--pred", pred)
    assert result.exit_code == 0, result.output
    assert "inf" not in result.stdout
    assert "note: cam_right has no ground-truth boxes in the scored frames" in result.stdout
    metrics = json.loads((pred / "eval.json").read_text())  # strict JSON: no -Infinity
    assert metrics["per_camera"]["cam_right"]["mota"] is None and metrics["per_camera"]["cam_left"]["mota"] == 1.0
    (gt / "cam_left" / "gt" / "gt.txt").write_text("")
    result = invoke("eval", "--gt", gt, "--pred", pred, "--json", tmp_path / "m.json")
    assert one_error_line(result) == f"error: ground truth is empty: no camera in {gt} has a box in the scored frames"
    assert not (tmp_path / "m.json").exists()


def test_export_dataset_to_an_unwritable_target_is_one_line(finished_run, tmp_path):
    (tmp_path / "a_file").write_text("")
    target = tmp_path / "a_file" / "dataset"
    line = one_error_line(invoke("export-dataset", finished_run, target))
    assert line == f"error: cannot write dataset folder {target}: Not a directory"


def test_a_cache_copied_without_its_crops_is_refused_naming_the_first_crop(finished_run, tmp_path):
    table = load_tracklets(finished_run, load_run_info(finished_run))
    check_crops_present(finished_run, table)  # the run itself is complete
    out = tmp_path / "copy"
    shutil.copytree(finished_run / "cache", out / "cache")
    camera, track_id = table.keys[0]
    first = out / "crops" / camera / f"{track_id:05d}_0.jpg"
    with pytest.raises(CctrackError) as raised:
        check_crops_present(out, table)
    assert str(raised.value) == f"crop {first} is missing: the cache in {out} is incomplete (copied without crops/?); re-run `cctrack run`"
    # `cctrack link` refuses such a cache before writing anything.
    before = {p: p.stat().st_mtime_ns for p in files_under(out)}
    result = invoke("link", out, "--no-video", "--quiet")
    assert result.exit_code == 2 and "is missing: the cache" in result.stderr, result.output
    assert {p: p.stat().st_mtime_ns for p in files_under(out)} == before


def test_summary_says_when_nobody_was_found_and_lists_the_folders(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "crops").mkdir()
    nobody = RunSummary(tmp_path, cameras=2, tracklets=0, identities=0, multi_camera_identities=0,
                        outputs=[tmp_path / "identities.json"])
    assert nobody.text().splitlines() == [
        "cameras: 2", "tracklets: 0", "identities: 0 (no people found)",
        f"outputs in {tmp_path}:", "  identities.json", "  cache/", "  crops/",
    ]
    unlinked = RunSummary(tmp_path, cameras=2, tracklets=5, identities=0, multi_camera_identities=0, outputs=[])
    assert "identities: not linked (--no-link)" in unlinked.text().splitlines()


def test_version_comes_from_the_package_metadata():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"cctrack {importlib.metadata.version('cctrack')}\n"


def test_progress_in_a_log_file_is_plain_lines(crossing_sample, tmp_path):
    """CliRunner's stderr is not a terminal, like `cctrack run ... 2> run.log`."""
    result = invoke("run", crossing_sample, "--out", tmp_path / "out", "--max-frames", "4")
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr and "\x1b[" not in result.stderr
    lines = result.stderr.splitlines()
    for prefix in ("track cam_left: 4/4 frames in ", "track cam_right: 4/4 frames in ", "video: 4/4 frames in "):
        assert any(line.startswith(prefix) for line in lines), result.stderr
    assert any(line.startswith("embed: ") and " crops in " in line for line in lines), result.stderr
    assert "  cache/" in result.stdout.splitlines() and "  crops/" in result.stdout.splitlines()


def test_a_terminal_is_told_while_the_models_load(crossing_sample, tmp_path, monkeypatch, capsys):
    import sys

    from cctrack.config import load_config
    from cctrack.pipeline import run

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    run(crossing_sample, tmp_path / "out", load_config(None, ["video.max_frames=2", "export.video=false", "export.link=false"]))
    assert capsys.readouterr().err.startswith("loading the detector and the re-id model on ")


def _no_space(self, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _cannot_encode(image_type, image, params=None):
    return False, None


@pytest.mark.parametrize("fail, cause", [
    (lambda monkeypatch: monkeypatch.setattr(Path, "write_bytes", _no_space), "No space left on device"),
    (lambda monkeypatch: monkeypatch.setattr(cv2, "imencode", _cannot_encode), "OpenCV cannot encode a (")
], ids=["disk-full", "encoder-fails"])
def test_a_crop_that_cannot_be_written_stops_the_run_naming_it_and_why(crossing_sample, tmp_path, monkeypatch, fail, cause):
    fail(monkeypatch)
    out = tmp_path / "out"
    result = invoke("run", crossing_sample, "--out", out, "--max-frames", "4", "--no-link", "--no-video", "--quiet")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {out / 'crops'}/") and cause in lines[0], result.stderr
    assert not list((out / "crops").rglob("*.jpg")) and not [p for p in files_under(out) if ".tmp" in p.name]


class TruncatingVideoWriter:
    """OpenCV's video writer on a disk that fills up: every call succeeds, and the file ends without its
    index (an mp4 without its moov atom)."""

    real = cv2.VideoWriter

    def __init__(self, path, *args):
        self.path = Path(path)
        self.writer = self.real(path, *args)

    def isOpened(self):
        return self.writer.isOpened()

    def write(self, frame):
        self.writer.write(frame)

    def release(self):
        self.writer.release()
        if self.path.exists():
            os.truncate(self.path, self.path.stat().st_size // 2)


def test_a_video_that_does_not_play_back_stops_the_run_and_is_not_renamed_into_place(crossing_sample, tmp_path, monkeypatch):
    monkeypatch.setattr(cv2, "VideoWriter", TruncatingVideoWriter)
    out = tmp_path / "out"
    result = invoke("run", crossing_sample, "--out", out, "--max-frames", "4", "--no-link", "--quiet")
    assert result.exit_code == 2, result.output
    video = out / "videos" / "cam_left.mp4"
    assert result.stderr.strip().splitlines() == [f"error: cannot write {video}: the written video reads back 0 of its 4 frames"]
    assert files_under(out / "videos") == []


FULL_DISK_SCRIPT = """
mount -t tmpfs -o size=128k tmpfs "$1" || exit 77
"$2" -m cctrack.cli run "$3" --out "$1/out" --no-link --imgsz 160 --quiet 2>"$1/stderr"
echo "exit $?"
tail -n 1 "$1/stderr"
find "$1/out" -name "*.mp4"
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) to mount a small tmpfs")
def test_a_full_disk_names_the_video_and_leaves_no_unplayable_file(tmp_path):
    """A real 128 KiB tmpfs as --out: the small files fit, two cameras of noise (about 180 KB each) do not."""
    rng = np.random.default_rng(0)
    cams = tmp_path / "cams"
    cams.mkdir()
    for name in ("a", "b"):
        write_video(cams / f"{name}.mp4", [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(20)])
    (tmp_path / "disk").mkdir()
    done = subprocess.run(["unshare", "--mount", "sh", "-c", FULL_DISK_SCRIPT, "sh", tmp_path / "disk", sys.executable, cams],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode == 77 or "exit" not in done.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    exit_line, error_line, *videos = done.stdout.strip().splitlines()
    assert exit_line == "exit 2"
    assert error_line.startswith(f"error: cannot write {tmp_path / 'disk' / 'out' / 'videos'}/")
    assert error_line.endswith(".mp4: No space left on device")
    assert videos == []


def test_max_seconds_cuts_cameras_of_10_and_25_fps_at_the_same_time_and_the_mosaic_follows_the_layout(tmp_path):
    """2 s of each camera: 20 and 50 frames. The layout starts b_fast's clock 1 s later, so the mosaic spans
    3 s at 25 fps: frame k (time k / 25 s) shows a_slow's frame 2k // 5 during 0-2 s, b_fast's k - 25 during 1-3 s."""
    cams = numbered_cameras(tmp_path / "cams", {"a_slow": (10.0, 30), "b_fast": (25.0, 75)})
    config = tmp_path / "layout.yaml"
    config.write_text("layout:\n  cameras:\n    b_fast: {time_offset_seconds: 1.0}\n")
    out = tmp_path / "out"
    result = invoke("run", cams, "--out", out, "--config", config, "--max-seconds", "2", "--no-link", "--imgsz", "160", "--quiet")
    assert result.exit_code == 0, result.output
    assert [c.frames_processed for c in load_run_info(out).cameras] == [20, 50]
    assert [frame_count(out / "videos" / f"{name}.mp4") for name in ("a_slow", "b_fast")] == [20, 50]
    expected = [(2 * k // 5 if k < 50 else -1, k - 25 if k >= 25 else -1) for k in range(75)]
    assert read_mosaic(out / "videos" / "mosaic.mp4") == expected
    assert "--max-seconds" in invoke("run", "--help").stdout


def test_search_finds_where_else_a_person_went(finished_run):
    document = json.loads((finished_run / "identities.json").read_text())
    tracklets = [(t["camera"], t["track_id"]) for identity in document["identities"] for t in identity["tracklets"]]
    camera, track = tracklets[0]
    # A photo of the person: the tracklet's own representative crop finds that tracklet first.
    photo = finished_run / "crops" / camera / f"{track:05d}_0.jpg"
    result = invoke("search", finished_run, "--image", photo, "--top", "3", "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert [(hits[0]["camera"], hits[0]["track_id"])] == [(camera, track)] and len(hits) == 3
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["similarity"] >= hits[1]["similarity"] >= hits[2]["similarity"]
    # A tracklet as the query: never itself; filters by camera and by time.
    result = invoke("search", finished_run, "--tracklet", f"{camera}:{track}", "--top", "100", "--json")
    hits = json.loads(result.stdout)
    assert len(hits) == len(tracklets) - 1 and (camera, track) not in [(h["camera"], h["track_id"]) for h in hits]
    other = next(c for c, _ in tracklets if c != camera)
    hits = json.loads(invoke("search", finished_run, "--tracklet", f"{camera}:{track}", "--camera", other, "--json").stdout)
    assert hits and {h["camera"] for h in hits} == {other}
    hits = json.loads(invoke("search", finished_run, "--tracklet", f"{camera}:{track}", "--between", "0", "00:00:02", "--json").stdout)
    assert all(h["first_seconds"] <= 2 for h in hits)
    table = invoke("search", finished_run, "--tracklet", f"{camera}:{track}", "--top", "2").stdout.splitlines()
    assert table[0].split()[:4] == ["rank", "camera", "track", "identity"] and len(table) == 3


@pytest.mark.parametrize("args, message", [
    ([], "give exactly one query"),
    (["--tracklet", "cam_left:999"], "tracklet cam_left:999 is not in this run"),
    (["--tracklet", "cam_left"], "expected camera:track"),
    (["--tracklet", "cam_left:1", "--camera", "lobby"], "camera lobby is not in this run"),
    (["--tracklet", "cam_left:1", "--between", "10", "5"], "the end (5 s) is before the start (10 s)"),
    (["--tracklet", "cam_left:1", "--between", "ten", "20"], "expected seconds or HH:MM:SS"),
    (["--image", "/nonexistent/photo.jpg"], "cannot read image"),
])
def test_search_mistakes_are_one_line(finished_run, args, message):
    result = invoke("search", finished_run, *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_link_applies_a_person_s_corrections_whatever_the_threshold(finished_run, tmp_path):
    out = tmp_path / "corrected"
    shutil.copytree(finished_run, out)
    model = json.loads((finished_run / "identities.json").read_text())
    link = next(link for link in model["links"] if link["cross_camera"])
    a, b = (f"{link[end]['camera']}:{link[end]['track_id']}" for end in ("a", "b"))

    def identity_of(document: dict, key: str) -> int:
        return next(identity["id"] for identity in document["identities"] for t in identity["tracklets"]
                    if f"{t['camera']}:{t['track_id']}" == key)

    # different: the model's own cross-camera link is undone, at the default settings and at any looser one.
    (out / "corrections.yaml").write_text(f"different: [[{a}, {b}]]\n")
    for settings in ([], ["--set", "link.min_probability=0.5"], ["--set", "link.distance_threshold=1.9"]):
        result = invoke("link", out, "--no-video", "--quiet", *settings)
        assert result.exit_code == 0, result.output
        document = json.loads((out / "identities.json").read_text())
        validate_identities(document)
        assert identity_of(document, a) != identity_of(document, b)
        assert {link["source"] for link in document["links"]} <= {"model"}
    # same, from --corrections: joined even when the threshold links nothing else; the link says a person made it.
    corrections = tmp_path / "mine.yaml"
    corrections.write_text(f"same: [[{a}, {b}]]\n")
    result = invoke("link", out, "--no-video", "--quiet", "--corrections", corrections, "--set", "link.distance_threshold=0.000001")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "identities.json").read_text())
    validate_identities(document)
    assert document["schema_version"] == "1.5" and identity_of(document, a) == identity_of(document, b)
    [person] = document["links"]
    assert person["source"] == "person" and person["confidence"] == 1.0
    assert {f"{person[end]['camera']}:{person[end]['track_id']}" for end in ("a", "b")} == {a, b}


@pytest.mark.parametrize("text, message", [
    ("same: [[{a}, {b}]]\ndifferent: [[{b}, {a}]]\n", "different[0] [{b}, {a}] contradicts same[0] [{a}, {b}]"),
    ("alone: [cam_left:999]\n", "alone[0] cam_left:999 names cam_left:999, an unknown tracklet"),
    ("same: [[{a}, {b}]\n", "corrections.yaml is not valid YAML"),
])
def test_link_refuses_contradictory_or_unknown_corrections_in_one_line(finished_run, tmp_path, text, message):
    out = tmp_path / "corrected"
    shutil.copytree(finished_run, out)
    link = next(link for link in json.loads((finished_run / "identities.json").read_text())["links"] if link["cross_camera"])
    a, b = (f"{link[end]['camera']}:{link[end]['track_id']}" for end in ("a", "b"))
    (out / "corrections.yaml").write_text(text.format(a=a, b=b))
    before = (out / "identities.json").read_text()
    result = invoke("link", out, "--no-video", "--quiet")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message.format(a=a, b=b) in lines[0], result.stderr
    assert (out / "identities.json").read_text() == before
    missing = invoke("link", out, "--no-video", "--quiet", "--corrections", tmp_path / "none.yaml")
    assert missing.exit_code == 2 and "corrections file" in missing.stderr and "not found" in missing.stderr


def test_run_refuses_a_bad_corrections_file_before_any_work_as_link_does(crossing_sample, tmp_path):
    corrections = tmp_path / "corrections.yaml"
    corrections.write_text("same: [[cam_left:3]]\n")
    out = tmp_path / "out"
    result = invoke("run", crossing_sample, "--out", out, "--corrections", corrections, "--quiet")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: corrections {corrections}: same[0] must be a pair [camera:track, camera:track], got ['cam_left:3']"
    assert files_under(out) == []


def test_report_cards_find_similar_as_search_ranks_them(finished_run):
    from cctrack.report import report_data
    from cctrack.search import search

    data = report_data(finished_run)
    names = [camera["name"] for camera in data["cameras"]]
    checked = 0
    for identity in data["identities"][:5]:
        similar = identity["similar"]
        assert similar and all(entry[2] != identity["id"] for entry in similar)
        assert [entry[3] for entry in similar] == sorted((entry[3] for entry in similar), reverse=True)
        first = identity["tracklets"][0]
        hits = [h for h in search(finished_run, tracklet=f"{names[first[0]]}:{first[1]}", top=100) if h.identity != identity["id"]]
        assert [(names[e[0]], e[1]) for e in similar] == [(h.camera, h.track_id) for h in hits[:len(similar)]]
        checked += 1
    assert checked


def test_the_sample_s_report_renders_every_identity_in_a_browser(finished_run, tmp_path):
    from tests.test_report import CHROMIUM, page_errors, render, rendered_ids

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium): no browser to render the page")
    document = json.loads((finished_run / "identities.json").read_text())
    dom, console = render(finished_run / "report.html", "", tmp_path / "profile")
    assert sorted(rendered_ids(dom)) == sorted(identity["id"] for identity in document["identities"])
    assert console == [] and page_errors(dom) is None  # no script error, no crop that failed to load
    dom, _ = render(finished_run / "report.html", "multi=1", tmp_path / "profile")
    assert sorted(rendered_ids(dom)) == sorted(i["id"] for i in document["identities"] if len({t["camera"] for t in i["tracklets"]}) > 1)
