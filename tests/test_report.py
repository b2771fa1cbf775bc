"""report.html: the embedded data holds every identity, the CLI builds it or stops with one line, it stays
small and quick at 1,000 identities, and (where chromium is installed) the page renders and filters."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cctrack.cli import app
from cctrack.errors import CctrackError
from cctrack.export import validate_identities
from cctrack.report import write_report

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium): no browser to render the page")
CAMERAS = ("cam_a", "cam_b", "cam_c")
FPS = 10.0


def tracklet(camera: str, track_id: int, first_frame: int, last_frame: int, crop: bool = True) -> dict:
    first, last = (first_frame - 1) / FPS, (last_frame - 1) / FPS
    return {"camera": camera, "track_id": track_id, "first_frame": first_frame, "last_frame": last_frame,
            "first_seconds": first, "last_seconds": last, "first_shared_seconds": first, "last_shared_seconds": last,
            "boxes": last_frame - first_frame + 1, "crop": f"crops/{camera}/{track_id:05d}_0.jpg" if crop else None}


def identities_document(identities: list[list[dict]], links: list[dict], video_dir: str = "/data/videos") -> dict:
    entries = []
    for number, tracklets in enumerate(identities, start=1):
        entries.append({
            "id": number, "cameras": sorted({t["camera"] for t in tracklets}),
            "first_seconds": min(t["first_seconds"] for t in tracklets), "last_seconds": max(t["last_seconds"] for t in tracklets),
            "first_shared_seconds": min(t["first_shared_seconds"] for t in tracklets),
            "last_shared_seconds": max(t["last_shared_seconds"] for t in tracklets), "tracklets": tracklets,
        })
    model = {"description": "test model", "path": "/models/m.pt", "sha256": "ab" * 32}
    camera_entries = [{"name": c, "path": f"{video_dir}/{c}.mp4", "fps": FPS, "frame_count": 3000, "width": 64, "height": 128,
                       "frames_processed": 3000, "last_frame": 3000, "stride": 1} for c in CAMERAS]
    return {
        "schema_version": "1.5",
        "run": {"tool": "cctrack", "version": "0.1.0", "created": "2026-11-30T12:00:00+00:00", "video_dir": video_dir,
                "cameras": camera_entries, "models": {"detector": model, "reid": model},
                "config": {"link": {"min_probability": 0.9, "linkage": "average"}}},
        "summary": {"cameras": len(CAMERAS), "tracklets": sum(len(t) for t in identities), "identities": len(identities),
                    "multi_camera_identities": sum(len({t["camera"] for t in ts}) > 1 for ts in identities),
                    "cross_camera_links": sum(link["cross_camera"] for link in links)},
        "identities": entries,
        "links": links,
        "transit": [{"cameras": ["cam_a", "cam_b"], "typical_seconds": 2.0, "range_seconds": [1.46, 2.67], "matches": 13.3,
                     "ways": [{"from": "cam_a", "to": "cam_b", "leave_at": [0.97, 0.31], "enter_at": [0.05, 0.36]}]}],
    }


def link(identity: int, a: tuple[str, int], b: tuple[str, int], confidence: float) -> dict:
    return {"identity": identity, "a": {"camera": a[0], "track_id": a[1]}, "b": {"camera": b[0], "track_id": b[1]},
            "cross_camera": a[0] != b[0], "similarity": 0.71, "confidence": confidence, "source": "model"}


@pytest.fixture()
def small_run(tmp_path) -> Path:
    """Three identities: #1 in cam_a and cam_b (3 crops each), #2 in cam_b, #3 in cam_c without a crop;
    cam_a has a video, and an eval.json. The video folder's name holds '</script>' to prove the embedding."""
    out = tmp_path / "run"
    identities = [
        [tracklet("cam_a", 1, 11, 60), tracklet("cam_b", 4, 81, 150)],
        [tracklet("cam_b", 2, 31, 90)],
        [tracklet("cam_c", 1, 201, 260, crop=False)],
    ]
    document = identities_document(identities, [link(1, ("cam_a", 1), ("cam_b", 4), 0.93)], video_dir="/data/</script>x")
    validate_identities(document)
    out.mkdir()
    (out / "identities.json").write_text(json.dumps(document))
    for camera, track_id in [("cam_a", 1), ("cam_b", 4), ("cam_b", 2)]:
        for k in range(3):
            path = out / "crops" / camera / f"{track_id:05d}_{k}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.full((16, 8, 3), 40 * (k + 1), np.uint8))
    (out / "videos").mkdir()
    (out / "videos" / "cam_a.mp4").write_bytes(b"")
    metrics = {"idf1": 0.8, "mota": 0.7, "id_switches": 3}
    (out / "eval.json").write_text(json.dumps({"per_camera": {"cam_a": metrics}, "multi_camera": metrics}))
    return out


def embedded_data(report: Path) -> dict:
    blob = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', report.read_text(), re.S)
    return json.loads(blob.group(1))


def test_report_embeds_every_identity_with_crops_links_and_eval(small_run):
    report = write_report(small_run)
    assert report == small_run / "report.html"
    data = embedded_data(report)
    assert [identity["id"] for identity in data["identities"]] == [1, 2, 3]
    assert data["video_dir"] == "/data/</script>x"  # escaped in the page, whole again after parsing
    first = data["identities"][0]
    assert first["tracklets"] == [[0, 1, 1.0, 5.9, "crops/cam_a/00001_0.jpg", 3], [1, 4, 8.0, 14.9, "crops/cam_b/00004_0.jpg", 3]]
    assert first["links"] == [[0, 1, 1, 4, 0.71, 0.93, True, "model"]]
    assert data["identities"][2]["tracklets"] == [[2, 1, 20.0, 25.9, None, 0]]
    assert [camera["video"] for camera in data["cameras"]] == ["videos/cam_a.mp4", None, None]
    assert data["eval"]["multi_camera"]["idf1"] == 0.8
    assert data["models"]["reid"]["sha256"] == "ab" * 32
    assert data["link_settings"] == {"min_probability": 0.9, "linkage": "average"}
    assert data["transit"] == [{"cameras": ["cam_a", "cam_b"], "typical_seconds": 2.0, "range_seconds": [1.46, 2.67], "matches": 13.3,
                                "ways": [{"from": "cam_a", "to": "cam_b", "leave_at": [0.97, 0.31], "enter_at": [0.05, 0.36]}]}]
    page = report.read_text()
    assert "http://" not in page and "https://" not in page  # offline: nothing fetched from a network
    assert [p.name for p in small_run.iterdir() if ".tmp" in p.name] == []


def test_cli_report_rebuilds_the_page(small_run):
    result = runner.invoke(app, ["report", str(small_run)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"report written to {small_run / 'report.html'}"
    assert len(embedded_data(small_run / "report.html")["identities"]) == 3


def test_cli_eval_refreshes_an_existing_report_with_its_metrics(small_run, tmp_path):
    write_report(small_run)
    (small_run / "eval.json").unlink()
    boxes = "".join(f"{frame},1,10,10,20,40,1,-1,-1,-1\n" for frame in range(11, 61))
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "cam_a.txt").write_text(boxes)
    (small_run / "global").mkdir()
    (small_run / "global" / "cam_a.txt").write_text(boxes)
    result = runner.invoke(app, ["eval", "--gt", str(tmp_path / "gt"), "--pred", str(small_run)])
    assert result.exit_code == 0, result.output
    assert f"report written to {small_run / 'report.html'} (with these metrics)" in result.stdout
    assert embedded_data(small_run / "report.html")["eval"]["per_camera"]["cam_a"]["idf1"] == 1.0


def test_cli_report_without_identities_is_one_line_error(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output == f"error: {tmp_path / 'identities.json'} not found: run `cctrack run` first\n"
    assert not (tmp_path / "report.html").exists()


def test_unreadable_identities_is_a_project_error(tmp_path):
    (tmp_path / "identities.json").write_text("{not json")
    with pytest.raises(CctrackError, match=r"^cannot read .*identities\.json: "):
        write_report(tmp_path)


def scale_run(folder: Path, identity_count: int = 1000, tracklets_per_identity: int = 10) -> Path:
    """1,000 identities of 10 tracklets each (10,000 tracklets); every 4th identity spans cameras."""
    rng = np.random.default_rng(0)
    identities, links, next_track = [], [], {c: 1 for c in CAMERAS}
    for number in range(1, identity_count + 1):
        cameras = CAMERAS if number % 4 == 0 else ("cam_a",)
        tracklets = []
        for index in range(tracklets_per_identity):
            camera = cameras[index % len(cameras)]
            first = int(rng.integers(1, 2900))
            tracklets.append(tracklet(camera, next_track[camera], first, first + 50))
            next_track[camera] += 1
        tracklets.sort(key=lambda t: (t["first_shared_seconds"], t["camera"]))
        identities.append(tracklets)
        links += [link(number, (a["camera"], a["track_id"]), (b["camera"], b["track_id"]), float(rng.uniform(0.9, 1)))
                  for a, b in zip(tracklets, tracklets[1:])]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "identities.json").write_text(json.dumps(identities_document(identities, links)))
    return folder


@pytest.fixture(scope="module")
def large_run(tmp_path_factory) -> Path:
    return scale_run(tmp_path_factory.mktemp("large") / "run")


def test_report_of_1000_identities_is_small_and_fast(large_run):
    started = time.perf_counter()
    report = write_report(large_run)
    seconds = time.perf_counter() - started
    assert report.stat().st_size < 5_000_000
    assert seconds < 5.0
    data = embedded_data(report)
    assert len(data["identities"]) == 1000
    assert sum(len(identity["tracklets"]) for identity in data["identities"]) == 10_000


def render(report: Path, view: str, user_data_dir: Path) -> tuple[str, list[str]]:
    """The page's DOM after its script ran, and the browser console's lines."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={user_data_dir}",
               "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom", f"{report.as_uri()}#{view}"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    return finished.stdout, [line for line in finished.stderr.splitlines() if ":CONSOLE" in line]


def page_errors(dom: str) -> str | None:
    """What the page's error handler recorded on <html data-errors="...">; None when nothing went wrong."""
    root = re.search(r"<html[^>]*>", dom).group(0)
    found = re.search(r'data-errors="([^"]*)"', root)
    return found.group(1) if found else None


def rendered_ids(dom: str) -> list[int]:
    return [int(number) for number in re.findall(r'class="card" data-id="(\d+)"', dom)]


@needs_chromium
def test_browser_renders_every_card_without_console_errors(small_run, tmp_path):
    dom, console = render(write_report(small_run), "", tmp_path / "profile")
    assert rendered_ids(dom) == [1, 2, 3]
    assert console == []
    assert page_errors(dom) is None
    assert "<code>cam_a:1</code>" in dom and "<code>cam_b:4</code>" in dom  # tracklet ids as copyable text
    assert "<td>cam_a &lt;-&gt; cam_b</td>" in dom and "<td>1.46 to 2.67</td>" in dom  # the learned transit times
    assert "<td>cam_a -&gt; cam_b: leave at (0.97, 0.31), enter at (0.05, 0.36)</td>" in dom  # and where they walk
    assert 'href="videos/cam_a.mp4#t=1"' in dom  # cam_a's crops open its video at the tracklet's first second
    assert 'href="videos/cam_b.mp4' not in dom  # cam_b has no video
    assert 'loading="lazy"' in dom


@needs_chromium
def test_browser_reports_a_crop_that_fails_to_load(small_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(small_run, run)
    (run / "crops" / "cam_a" / "00001_0.jpg").unlink()
    dom, _ = render(write_report(run), "", tmp_path / "profile")
    assert "failed to load crops/cam_a/00001_0.jpg" in (page_errors(dom) or "")


@needs_chromium
def test_browser_pages_filters_and_sorts_1000_identities(large_run, tmp_path):
    report = write_report(large_run)
    data = embedded_data(report)
    dom, console = render(report, "", tmp_path / "profile")
    assert not [line for line in console if "Uncaught" in line]
    # This made-up run has no crop files: only their loads may fail, never the script.
    assert not [error for error in (page_errors(dom) or "").split(";") if error and not error.startswith("failed to load")]
    by_first_seen = sorted(data["identities"], key=lambda i: (i["first"], i["id"]))
    assert rendered_ids(dom) == [i["id"] for i in by_first_seen[:50]]
    assert "page 1 of 20 (1000 identities)" in dom

    dom, _ = render(report, "multi=1&page=2", tmp_path / "profile")
    multi_camera = [i["id"] for i in by_first_seen if len({t[0] for t in i["tracklets"]}) > 1]
    assert rendered_ids(dom) == multi_camera[50:100]
    assert "page 2 of 5 (250 identities)" in dom

    dom, _ = render(report, "q=cam_c:7", tmp_path / "profile")
    wanted = [i["id"] for i in by_first_seen if any(f"{data['cameras'][t[0]]['name']}:{t[1]}".startswith("cam_c:7") for t in i["tracklets"])]
    assert sorted(rendered_ids(dom)) == sorted(wanted) and wanted

    dom, _ = render(report, "sort=confidence", tmp_path / "profile")
    lowest_confidence = {i["id"]: min(link[5] for link in i["links"]) for i in data["identities"]}
    shown = [lowest_confidence[number] for number in rendered_ids(dom)]
    assert shown == sorted(lowest_confidence.values())[:50]
