"""OUT_DIR/report.html: one offline page that shows every identity of a run.

The page is the template report.html beside this file with the run's data embedded as one JSON blob;
its own script renders the cards a page at a time, so 1,000 identities open as fast as 10. Crops are
relative links (lazy-loaded), so the page works from the output folder with no network."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cctrack.errors import CctrackError
from cctrack.files import write_text_atomic

TEMPLATE_PATH = Path(__file__).with_name("report.html")
DATA_PLACEHOLDER = "/*REPORT_DATA*/null"
# crops/<camera>/<track:05d>_<k>.jpg; k = 0 is the representative crop
CROP_NAME = re.compile(r"^(\d+)_(\d+)\.jpg$")


def write_report(out_dir: Path) -> Path:
    """Build OUT_DIR/report.html from identities.json (and eval.json when present); return its path."""
    out_dir = Path(out_dir)
    page = TEMPLATE_PATH.read_text().replace(DATA_PLACEHOLDER, embedded_json(report_data(out_dir)))
    target = out_dir / "report.html"
    write_text_atomic(target, page)
    return target


def embedded_json(data: dict) -> str:
    # "</" would end the <script> element early; "<\/" is the same string to a JSON parser.
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def report_data(out_dir: Path) -> dict:
    """The page's data: the run header, the eval metrics, and identities in compact rows.

    A tracklet is [camera index, track id, first_seconds, last_seconds, crop or null, crop count] (seconds on
    the camera's own clock, rounded to 0.01 s); a link is [camera a, track a, camera b, track b, similarity,
    confidence, cross_camera, source ("model" or "person")]."""
    document = _load_json(out_dir / "identities.json", "run `cctrack run` first")
    run = document["run"]
    camera_names = [camera["name"] for camera in run["cameras"]]
    camera_index = {name: index for index, name in enumerate(camera_names)}
    crop_counts = _crop_counts(out_dir / "crops", camera_names)
    links_by_identity: dict[int, list] = {}
    for link in document["links"]:
        links_by_identity.setdefault(link["identity"], []).append([
            camera_index[link["a"]["camera"]], link["a"]["track_id"], camera_index[link["b"]["camera"]],
            link["b"]["track_id"], round(link["similarity"], 3), round(link["confidence"], 3), link["cross_camera"],
            link.get("source", "model"),  # 1.3: "person" for a link from corrections.yaml
        ])
    similar = find_similar(out_dir, document, camera_index)
    identities = []
    for identity in document["identities"]:
        tracklets = [
            [camera_index[t["camera"]], t["track_id"], round(t["first_seconds"], 2), round(t["last_seconds"], 2), t["crop"],
             crop_counts.get((t["camera"], t["track_id"]), 1 if t["crop"] else 0)]
            for t in identity["tracklets"]
        ]
        # 1.0 and 1.1 files have no shared clock: the cameras' own clocks stand in for it
        first_shared = identity.get("first_shared_seconds", identity["first_seconds"])
        identities.append({"id": identity["id"], "first": round(first_shared, 2), "tracklets": tracklets,
                           "links": links_by_identity.get(identity["id"], []),
                           "similar": similar.get(identity["id"], [])})
    eval_path = out_dir / "eval.json"
    return {
        "schema_version": document["schema_version"],
        "tool_version": run["version"],
        "created": run["created"],
        "video_dir": run["video_dir"],
        "cameras": [_camera_entry(camera, out_dir) for camera in run["cameras"]],
        "models": run["models"],
        "link_settings": run["config"].get("link", {}),
        "transit": document.get("transit", []),  # 1.4: the transit times the linker learned
        "summary": document["summary"],
        "identities": identities,
        "eval": _load_json(eval_path, "") if eval_path.is_file() else None,
    }


SIMILAR_SHOWN = 5


def find_similar(out_dir: Path, document: dict, camera_index: dict[str, int]) -> dict[int, list]:
    """Per identity, the SIMILAR_SHOWN tracklets of other identities most like its first tracklet, as
    `cctrack search --tracklet` ranks them: [camera index, track id, identity, similarity]. Empty when the
    run has no cached embeddings (e.g. a folder holding only identities.json)."""
    import numpy as np

    from cctrack.search import load_index

    try:
        index = load_index(out_dir)
    except CctrackError:
        return {}
    row_of = {(str(camera), int(track)): row for row, (camera, track) in enumerate(zip(index.cameras, index.track_ids))}
    queries = [(identity["id"], row_of.get((identity["tracklets"][0]["camera"], identity["tracklets"][0]["track_id"])))
               for identity in document["identities"]]
    queries = [(identity, row) for identity, row in queries if row is not None]
    if not queries:
        return {}
    similarity = index.descriptors[[row for _, row in queries]] @ index.descriptors.T
    similarity[index.identities[None, :] == np.array([identity for identity, _ in queries])[:, None]] = -np.inf
    shown = min(SIMILAR_SHOWN, similarity.shape[1])
    result = {}
    for (identity, _), scores in zip(queries, similarity):
        best = np.argpartition(-scores, shown - 1)[:shown]
        best = best[np.argsort(-scores[best])]
        result[identity] = [[camera_index[str(index.cameras[row])], int(index.track_ids[row]), int(index.identities[row]),
                             round(float(scores[row]), 3)] for row in best if np.isfinite(scores[row])]
    return result


def _camera_entry(camera: dict, out_dir: Path) -> dict:
    video = out_dir / "videos" / f"{camera['name']}.mp4"
    return {
        "name": camera["name"],
        "fps": camera["fps"],
        "frames_processed": camera["frames_processed"],
        "size": f"{camera['width']}x{camera['height']}",
        # the time bars' full width: the camera's processed time (last frame is 1-based)
        "seconds": round(max(camera["last_frame"] - 1, 1) / camera["fps"], 2),
        "video": f"videos/{camera['name']}.mp4" if video.is_file() else None,
    }


def _crop_counts(crops_dir: Path, camera_names: list[str]) -> dict[tuple[str, int], int]:
    """(camera, track id) -> number of crops on disk; one listing per camera, not one stat per crop."""
    counts: dict[tuple[str, int], int] = {}
    for camera in camera_names:
        folder = crops_dir / camera
        if not folder.is_dir():
            continue
        for name in (entry.name for entry in folder.iterdir()):
            match = CROP_NAME.match(name)
            if match:
                key = (camera, int(match.group(1)))
                counts[key] = max(counts.get(key, 0), int(match.group(2)) + 1)
    return counts


def _load_json(path: Path, hint: str) -> dict:
    if not path.is_file():
        raise CctrackError(f"{path} not found: {hint}" if hint else f"{path} not found")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CctrackError(f"cannot read {path}: {error}") from None
