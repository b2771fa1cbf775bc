"""`cctrack` command line: parse, load config, call one library function, print."""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from cctrack.errors import CctrackError, Interrupted

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Multi-camera person tracking with cloth-changing re-id.")

CONFIG_HELP = "YAML config (default: configs/default.yaml)"
SET_HELP = "Override any config value, e.g. --set detector.image_size=1280 (repeatable)"
CORRECTIONS_HELP = "A person's corrections (same / different / alone), default: OUT_DIR/corrections.yaml if there"
DEVICE_HELP = "Where the detector, the re-id model and the linker run: auto, cpu, cuda, cuda:1, ... (config: device)"


def _user_errors(command: Callable) -> Callable:
    """Turn project errors into one line on stderr and exit code 2 (no traceback for bad input); Ctrl-C
    into one line saying how to resume and exit code 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CctrackError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
        except Interrupted as stop:
            typer.echo(f"\n{stop}", err=True)
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            # Every output is written under a temporary name and renamed when complete: nothing half-written remains.
            typer.echo("\ninterrupted: run the same command again; finished stages are re-used", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _print_version(requested: bool) -> None:
    if requested:
        typer.echo(f"cctrack {importlib.metadata.version('cctrack')}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit"),
) -> None:
    """Options before the command name (typer calls this before every command)."""


@app.command("run")
@_user_errors
def run_command(
    video_dir: Path = typer.Argument(..., help="Folder with one video (or MOTChallenge image folder) per camera"),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    settings: list[str] = typer.Option([], "--set", help=SET_HELP),
    max_frames: Optional[int] = typer.Option(
        None, "--max-frames",
        help="Process at most this many frames of each camera: the same count, so a shorter time of a camera with a higher fps (see --max-seconds)",
    ),
    max_seconds: Optional[float] = typer.Option(
        None, "--max-seconds", help="Process at most this many seconds of each camera's video: floor(seconds x fps) frames"
    ),
    stride: Optional[int] = typer.Option(None, "--stride", help="Process every N-th frame"),
    image_size: Optional[int] = typer.Option(None, "--imgsz", help="Detector inference size (pixels, multiple of 32); default: chosen from the footage (detector.image_size: auto)"),
    detector_weights: Optional[str] = typer.Option(None, "--detector-weights", help="An ultralytics .pt file"),
    reid_checkpoint: Optional[str] = typer.Option(None, "--reid-checkpoint", help="A CSSC checkpoint from `reid train`; default: the shipped model; imagenet: the untrained baseline"),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
    video: Optional[bool] = typer.Option(None, "--video/--no-video", help="Write annotated videos"),
    link: Optional[bool] = typer.Option(None, "--link/--no-link", help="Link tracklets across cameras (re-id)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run of other videos in OUT (only cctrack's own outputs are removed)"),
    corrections: Optional[Path] = typer.Option(None, "--corrections", help=CORRECTIONS_HELP.replace("OUT_DIR", "OUT")),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars"),
    ray: Optional[str] = typer.Option(
        None, "--ray", help="Run each camera (or chunk) as a Ray task: auto (the cluster this node joined, else a local one), local, or a cluster address"
    ),
    chunk_seconds: Optional[float] = typer.Option(
        None, "--chunk-seconds", help="With --ray: split each camera into chunks of this many seconds, run in parallel and stitched"
    ),
    adapt: bool = typer.Option(False, "--adapt", help="Then fine-tune the re-id model on the run's own tracklets and re-link (`cctrack adapt`)"),
    adapt_steps: Optional[int] = typer.Option(None, "--adapt-steps", min=1, help="With --adapt: fine-tuning steps per round (64 crops each; default 200)"),
    adapt_rounds: Optional[int] = typer.Option(None, "--adapt-rounds", min=1, help="With --adapt: rounds of self-training (default 1)"),
) -> None:
    """Detect, track, re-identify and link people in every camera of VIDEO_DIR."""
    from cctrack.config import load_config
    from cctrack.pipeline import run

    flags = {
        "video.max_frames": max_frames,
        "video.max_seconds": max_seconds,
        "video.stride": stride,
        "detector.image_size": image_size,
        "detector.weights": detector_weights,
        "reid.checkpoint": reid_checkpoint,
        "device": device,
        "export.video": video,
        "export.link": link,
    }
    if chunk_seconds is not None and ray is None:
        raise CctrackError("--chunk-seconds needs --ray (chunks run as parallel Ray tasks)")
    if not adapt and (adapt_steps is not None or adapt_rounds is not None):
        raise CctrackError("--adapt-steps and --adapt-rounds need --adapt")
    ray_settings = None
    if ray is not None:
        from cctrack.distributed import RaySettings

        ray_settings = RaySettings(address=ray, chunk_seconds=chunk_seconds)
    run_config = load_config(config, settings, flags)
    if not adapt:
        summary = run(video_dir, out, run_config, show_progress=not quiet, overwrite=overwrite, corrections_path=corrections,
                      ray=ray_settings)
        typer.echo(summary.text())
        return
    from cctrack.adapt import run_and_adapt
    from reid.adapt import AdaptSettings

    adapt_settings = AdaptSettings() if adapt_steps is None else AdaptSettings(steps=adapt_steps)
    first, adapted = run_and_adapt(video_dir, out, run_config, adapt_settings, rounds=adapt_rounds or 1,
                                   show_progress=not quiet, overwrite=overwrite, corrections_path=corrections, ray=ray_settings)
    typer.echo(f"before adapting: {first.identities} identities, {first.multi_camera_identities} seen in more than one camera")
    typer.echo(adapted.text())


@app.command("link")
@_user_errors
def link_command(
    out_dir: Path = typer.Argument(..., help="Output folder of an earlier `cctrack run`"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    settings: list[str] = typer.Option([], "--set", help=SET_HELP),
    reid_checkpoint: Optional[str] = typer.Option(None, "--reid-checkpoint", help="A CSSC checkpoint (re-embeds cached crops)"),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
    video: Optional[bool] = typer.Option(None, "--video/--no-video", help="Write annotated videos"),
    corrections: Optional[Path] = typer.Option(None, "--corrections", help=CORRECTIONS_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars"),
) -> None:
    """Re-link the cached tracklets of OUT_DIR with other settings (no detection or tracking), keeping
    every correction a person made."""
    from cctrack.config import load_config
    from cctrack.pipeline import relink

    flags = {"reid.checkpoint": reid_checkpoint, "device": device, "export.video": video}
    summary = relink(out_dir, load_config(config, settings, flags), show_progress=not quiet, corrections_path=corrections)
    typer.echo(summary.text())


@app.command("adapt")
@_user_errors
def adapt_command(
    out_dir: Path = typer.Argument(..., help="Output folder of an earlier `cctrack run`"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    settings: list[str] = typer.Option([], "--set", help=SET_HELP),
    reid_checkpoint: Optional[str] = typer.Option(None, "--reid-checkpoint", help="The CSSC model to adapt (default: the shipped one)"),
    steps: int = typer.Option(200, "--steps", min=1, help="Fine-tuning steps (64 crops each)"),
    link_probability: float = typer.Option(0.95, "--link-probability", min=0.5, max=1.0, help="Links at least this likely count as one person in training"),
    rounds: int = typer.Option(1, "--rounds", min=1, help="Adapt again from the adapted model and its links, this many times in all"),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
    video: Optional[bool] = typer.Option(None, "--video/--no-video", help="Write annotated videos"),
    corrections: Optional[Path] = typer.Option(None, "--corrections", help=CORRECTIONS_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars"),
) -> None:
    """Fine-tune the re-id model on OUT_DIR's own tracklets (no labels), write OUT_DIR/adapted.pt, re-link."""
    from cctrack.adapt import adapt
    from cctrack.config import load_config
    from reid.adapt import AdaptSettings

    flags = {"reid.checkpoint": reid_checkpoint, "device": device, "export.video": video}
    summary = adapt(out_dir, load_config(config, settings, flags), AdaptSettings(steps=steps), link_probability,
                    show_progress=not quiet, rounds=rounds, corrections_path=corrections)
    typer.echo(summary.text())


@app.command("search")
@_user_errors
def search_command(
    out_dir: Path = typer.Argument(..., help="Output folder of an earlier `cctrack run`"),
    image: Optional[Path] = typer.Option(None, "--image", help="A photo of the person (a crop, as tight as a detector box)"),
    tracklet: Optional[str] = typer.Option(None, "--tracklet", help="A tracklet of the run as the query, e.g. cam_left:3"),
    top: int = typer.Option(20, "--top", min=1, help="How many tracklets to list"),
    camera: list[str] = typer.Option([], "--camera", help="Only this camera (repeatable)"),
    between: Optional[tuple[str, str]] = typer.Option(None, "--between", help="Only tracklets seen between two times (HH:MM:SS or seconds, the run's shared clock)"),
    json_output: bool = typer.Option(False, "--json", help="Print the hits as JSON"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda:0, ... (to embed --image)"),
) -> None:
    """Where else did this person go? Rank the run's tracklets by similarity to a photo or a tracklet."""
    from cctrack.search import format_hits, hits_json, parse_clock, search

    window = (parse_clock(between[0]), parse_clock(between[1])) if between else None
    hits = search(out_dir, image, tracklet, top, camera or None, window, device or "auto")
    typer.echo(hits_json(hits) if json_output else format_hits(hits))


@app.command("eval")
@_user_errors
def eval_command(
    gt: Path = typer.Option(..., "--gt", help="Ground truth: <camera>/gt/gt.txt folders (MOTChallenge)"),
    pred: Path = typer.Option(..., "--pred", help="Output folder of `cctrack run` (or a folder of <camera>.txt)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the metrics here (default: PRED/eval.json)"),
    max_frame: Optional[int] = typer.Option(None, "--max-frame", help="Score only frames <= this (1-based)"),
) -> None:
    """Per-camera MOTA/IDF1/IDP/IDR/ID switches and multi-camera IDF1 (py-motmetrics)."""
    from cctrack.evaluate import evaluate_run, format_report, report_to_dict
    from cctrack.files import write_json_atomic

    report = evaluate_run(gt, pred, max_frame=max_frame)
    target = json_path or (pred / "eval.json")
    write_json_atomic(target, report_to_dict(report))  # first: a bad --json is the only line the user sees
    typer.echo(format_report(report))
    typer.echo(f"metrics written to {target}")
    if target == pred / "eval.json" and (pred / "report.html").is_file():
        from cctrack.report import write_report

        typer.echo(f"report written to {write_report(pred)} (with these metrics)")


@app.command("sample-gt")
@_user_errors
def sample_gt_command(out_dir: Path = typer.Argument(..., help="Where to write <camera>/gt/gt.txt")) -> None:
    """Write the bundled sample's ground truth (derived from ../shared/data/PETS09-S2L1) as MOTChallenge folders."""
    from cctrack.sample import write_sample_ground_truth

    for camera, path in write_sample_ground_truth(out_dir).items():
        typer.echo(f"{camera}: {path}")


@app.command("export-dataset")
@_user_errors
def export_dataset_command(
    out_dir: Path = typer.Argument(..., help="Output folder of `cctrack run`"),
    target: Path = typer.Argument(..., help="New folder for the dataset"),
) -> None:
    """Write the run's crops as a re-id training set (`reid train ... --data-root TARGET`, dataset: folder),
    with the global identities as (pseudo) labels."""
    from cctrack.export import export_reid_dataset

    count = export_reid_dataset(out_dir, target)
    typer.echo(f"{count} crops written to {target}")


@app.command("report")
@_user_errors
def report_command(out_dir: Path = typer.Argument(..., help="Output folder of `cctrack run`")) -> None:
    """(Re)build OUT_DIR/report.html: every identity with its crops, times and links, on one offline page."""
    from cctrack.report import write_report

    typer.echo(f"report written to {write_report(out_dir)}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
