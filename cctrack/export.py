"""Exports: `identities.json` (schema: cctrack/identities.schema.json) and the re-id dataset; the
MOTChallenge files are cctrack.mot's.

identities.json uses 1-based frames (the same numbers as the MOT files) and two clocks: `*_seconds` from the start of each
camera's own video, `*_shared_seconds` on the layout's shared clock, the one linking compares cameras on
(cctrack.link.layout: time offsets and fps corrections; without a layout the two are equal).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

from cctrack import __version__
from cctrack.tracklets import crop_path
from cctrack.errors import CctrackError
from cctrack.files import write_json_atomic
from cctrack.link import Link
from cctrack.link.layout import CameraLayout
from cctrack.record import RunRecord
from cctrack.table import TrackletTable

# 1.1: a link's confidence is its probability (calibrated linking); 1.0 was a distance margin.
# 1.2: first/last_shared_seconds beside first/last_seconds (the camera's own clock).
# 1.3: each link's source: "model" (the evidence) or "person" (a `same` correction, corrections.yaml).
# 1.4: transit: the transit times the linker learned from the run.
# 1.5: transit[].ways: where the matches of each direction leave one camera and enter the other.
SCHEMA_VERSION = "1.5"
SCHEMA_PATH = Path(__file__).resolve().parent / "identities.schema.json"


def identities_document(record: RunRecord, table: TrackletTable, links: list[Link], link_config: dict,
                        layout: CameraLayout | None = None, transit: list[dict] | None = None) -> dict:
    """The `identities.json` document (see SCHEMA_PATH for every field) of a linked table (its identity
    column) and the links that made it; `layout` sets the shared clock (None: no layout, the cameras'
    own clocks); `transit`: the transit times the linker learned (TransitModel.summary)."""
    if table.identity is None:
        raise ValueError("identities_document needs a linked table (TrackletTable.with_identity)")
    video_fps = list(table.camera_fps)
    shared_fps, offset = (layout or CameraLayout.open(table.camera_names)).camera_clock(video_fps)
    members: dict[int, list[int]] = {}
    for index, identity in enumerate(table.identity.tolist()):
        members.setdefault(identity, []).append(index)
    crop_counts = table.crop_counts

    def tracklet_entry(index: int) -> dict:
        camera = int(table.camera_index[index])
        first_frame, last_frame = int(table.first_frame[index]), int(table.last_frame[index])
        return {
            "camera": table.camera_names[camera],
            "track_id": int(table.track_id[index]),
            "first_frame": first_frame + 1,
            "last_frame": last_frame + 1,
            "first_seconds": round(first_frame / video_fps[camera], 3),
            "last_seconds": round(last_frame / video_fps[camera], 3),
            "first_shared_seconds": round(float(first_frame / shared_fps[camera] + offset[camera]), 3),
            "last_shared_seconds": round(float(last_frame / shared_fps[camera] + offset[camera]), 3),
            "boxes": int(table.box_counts[index]),
            "crop": table.crop_paths(index)[0] if crop_counts[index] else None,
        }

    identities = []
    for identity in sorted(members):
        entries = sorted((tracklet_entry(i) for i in members[identity]), key=lambda e: (e["first_shared_seconds"], e["camera"]))
        identities.append(
            {
                "id": identity,
                "cameras": sorted({e["camera"] for e in entries}),
                "first_seconds": min(e["first_seconds"] for e in entries),
                "last_seconds": max(e["last_seconds"] for e in entries),
                "first_shared_seconds": min(e["first_shared_seconds"] for e in entries),
                "last_shared_seconds": max(e["last_shared_seconds"] for e in entries),
                "tracklets": entries,
            }
        )
    keys = table.keys
    link_entries = []
    for link in links:
        (camera_a, track_a), (camera_b, track_b) = keys[link.tracklet_a], keys[link.tracklet_b]
        link_entries.append(
            {
                "identity": int(table.identity[link.tracklet_a]),
                "a": {"camera": camera_a, "track_id": track_a},
                "b": {"camera": camera_b, "track_id": track_b},
                "cross_camera": camera_a != camera_b,
                "similarity": round(float(link.similarity), 4),
                "confidence": round(float(link.confidence), 4),
                "source": link.source,
            }
        )
    multi_camera = sum(1 for entry in identities if len(entry["cameras"]) > 1)
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "tool": "cctrack",
            "version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **record.to_dict(),
            "config": {**record.config, "link": link_config},
        },
        "summary": {
            "cameras": len(record.cameras),
            "tracklets": len(table),
            "identities": len(identities),
            "multi_camera_identities": multi_camera,
            "cross_camera_links": sum(1 for link in link_entries if link["cross_camera"]),
        },
        "identities": identities,
        "links": link_entries,
        "transit": transit or [],
    }


def check_crops_present(out_dir: Path, table: TrackletTable) -> None:
    """Refuse a cache whose crops are not beside it (e.g. cache/ copied without crops/): identities.json
    would point at crops that are not there, and re-embedding or export-dataset would fail later."""
    for row in range(len(table)):
        for path in (Path(out_dir) / relative for relative in table.crop_paths(row)):
            if not path.is_file():
                raise CctrackError(f"crop {path} is missing: the cache in {out_dir} is incomplete (copied without crops/?); re-run `cctrack run`")


def write_identities(path: Path, document: dict) -> None:
    write_json_atomic(path, document)


def validate_identities(document: dict) -> None:
    """Raise jsonschema.ValidationError if the document does not follow the published schema."""
    import jsonschema

    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text()))


def export_reid_dataset(out_dir: Path, target: Path) -> int:
    """Write a run's crops as a `reid` folder-of-identities dataset, one folder per global identity:
    `<target>/<identity>/<camera>_t<track id>_<k>.jpg` ('_' in camera names becomes '-', since '_' separates
    the tokens). The outfit token is the tracklet (`t<track id>`):
    cctrack cannot know clothes, and one tracklet is one outfit. Returns the number of images written.

    Train on it with `reid train --config configs/cssc_tiny.yaml --data-root TARGET` (dataset: folder)."""
    document_path = Path(out_dir) / "identities.json"
    if not document_path.is_file():
        raise CctrackError(f"{document_path} not found: run `cctrack run` (with linking) first")
    if Path(target).exists():
        raise CctrackError(f"dataset folder {target} already exists; give a new one")
    staging = Path(target).with_name(f".{Path(target).name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    written = 0
    try:
        for identity in json.loads(document_path.read_text())["identities"]:
            for tracklet in identity["tracklets"]:
                camera_token = tracklet["camera"].replace("_", "-")
                rank = 0
                while (source := Path(out_dir) / crop_path(tracklet["camera"], tracklet["track_id"], rank)).is_file():
                    destination = staging / f"{identity['id']:05d}" / f"{camera_token}_t{tracklet['track_id']}_{rank}.jpg"
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, destination)
                    written += 1
                    rank += 1
        staging.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
    except OSError as error:
        raise CctrackError(f"cannot write dataset folder {target}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
