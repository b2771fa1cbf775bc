"""`reid` command line: train, evaluate and export CSSC models. Parse, call one library function, print."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer

from reid.errors import ReidError
from reid.files import atomic_path

if TYPE_CHECKING:
    from reid.evaluate import Evaluation

app = typer.Typer(add_completion=False, no_args_is_help=True, help="CSSC cloth-changing person re-identification.")

METRIC_COLUMNS = ("rank1", "rank5", "rank10", "mAP", "mINP")


def _user_errors(command: Callable) -> Callable:
    """Turn project errors into one line on stderr and exit code 2 (no traceback for bad input)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ReidError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def metrics_table(dataset_name: str, results: Evaluation) -> str:
    """Protocol rows x metric columns, in percent; a skipped protocol's row says why."""
    from reid.evaluate import PROTOCOL_LABELS

    header = f"{'protocol':<16}" + "".join(f"{column:>8}" for column in METRIC_COLUMNS) + f"{'queries':>9}"
    lines = [header, "-" * len(header)]
    for protocol, metrics in results.items():
        label = PROTOCOL_LABELS[dataset_name].get(protocol, protocol)
        values = "".join(f"{100 * metrics[column]:8.1f}" for column in METRIC_COLUMNS)
        lines.append(f"{label:<16}{values}{metrics['num_valid_queries']:>9}")
    for protocol, reason in results.skipped.items():
        lines.append(f"{PROTOCOL_LABELS[dataset_name].get(protocol, protocol):<16}skipped: {reason}")
    return "\n".join(lines)


@app.command("train")
@_user_errors
def train_command(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config, e.g. configs/cssc_prcc.yaml"),
    data_root: Path = typer.Option(..., "--data-root", help="Dataset folder (layout as in the dataset's docs)"),
    out: Path = typer.Option(Path("runs/reid"), "--out", "-o", help="Output folder for checkpoints and logs"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Training checkpoint to continue from"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override config: number of epochs"),
    ids_per_batch: Optional[int] = typer.Option(None, "--ids-per-batch", help="Override config: P"),
    images_per_id: Optional[int] = typer.Option(None, "--images-per-id", help="Override config: K"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Override config: base learning rate"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override config: random seed"),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Override config: resnet50 | mobilenetv2 | efficientnet_lite0"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="Override config: imagenet | none | PATH"),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", help="Override config: data loader workers"),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="Override config: mixed precision on CUDA"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars"),
) -> None:
    """Train CSSC; writes checkpoints, model_final.pt, train_log.csv and training_curve.png to --out."""
    from reid.train import load_config, train

    settings = load_config(config).with_overrides(
        epochs=epochs, ids_per_batch=ids_per_batch, images_per_id=images_per_id, lr=lr, seed=seed,
        backbone=backbone, pretrained=pretrained, num_workers=num_workers, amp=amp,
    )
    result = train(settings, data_root, out, resume=resume, device=device, progress=not quiet, log=typer.echo)
    typer.echo(f"final weights: {result.final_weights}")


@app.command("eval")
@_user_errors
def eval_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Weights file (model_final.pt) or training checkpoint"),
    dataset: str = typer.Option(..., "--dataset", help="prcc | ltcc | celeb | market | cuhk03 | folder"),
    data_root: Path = typer.Option(..., "--data-root", help="Dataset folder"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics to this JSON file"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    batch_size: int = typer.Option(128, "--batch-size", help="Images per forward pass"),
    num_workers: int = typer.Option(4, "--num-workers", help="Data loader workers"),
    folder_train_fraction: float = typer.Option(
        0.5, "--folder-train-fraction",
        help="folder dataset: fraction of identities held out as train (unused with train/ and test/ subfolders)",
    ),
    folder_protocol: str = typer.Option(
        "first-per-camera", "--folder-protocol",
        help="folder dataset: first-per-camera (first image of each camera is a query; the gallery keeps other "
             "people's same-camera images) | cross-camera (queries: one camera; gallery: the other cameras)",
    ),
    folder_query_camera: Optional[str] = typer.Option(
        None, "--folder-query-camera", help="folder dataset, cross-camera: the query camera's name (default: the first)"
    ),
    rerank: bool = typer.Option(
        False, "--rerank", help="k-reciprocal re-ranking (Zhong et al. 2017; transductive: report it apart from the plain ranking)"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars"),
) -> None:
    """Evaluate a checkpoint with the dataset's protocols (flip-averaged features); prints a table."""
    from reid.evaluate import evaluate_checkpoint

    results = evaluate_checkpoint(
        checkpoint, dataset, data_root, device=device, batch_size=batch_size, num_workers=num_workers,
        folder_train_fraction=folder_train_fraction, progress=not quiet, folder_protocol=folder_protocol,
        folder_query_camera=folder_query_camera, rerank=rerank,
    )
    typer.echo(metrics_table(dataset, results) + ("\n(k-reciprocal re-ranking)" if rerank else ""))
    if json_out is not None:
        payload = {
            "checkpoint": str(checkpoint), "dataset": dataset, "data_root": str(data_root),
            "protocols": results.metrics, "skipped": results.skipped, "rerank": rerank,
        }
        if dataset == "folder":
            payload["folder_protocol"] = {"name": folder_protocol, "query_camera": folder_query_camera}
        with atomic_path(json_out) as temporary:
            temporary.write_text(json.dumps(payload, indent=2) + "\n")
        typer.echo(f"wrote {json_out}")


@app.command("calibrate")
@_user_errors
def calibrate_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Weights file (model_final.pt) to calibrate, rewritten in place"),
    dataset: str = typer.Option(..., "--dataset", help="Dataset whose held-back training identities calibrate"),
    data_root: Path = typer.Option(..., "--data-root", help="Dataset folder"),
    calibration_ids: int = typer.Option(..., "--calibration-ids", help="The last N training identities (never trained on)"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
) -> None:
    """Fit how the model's similarities read as same-person evidence, and store it in the weights file."""
    from reid.calibration import calibrate_weights_file
    from reid.datasets import load_dataset
    from reid.train import split_calibration_ids

    _, samples = split_calibration_ids(load_dataset(dataset, data_root).train, calibration_ids)
    typer.echo(calibrate_weights_file(checkpoint, samples, device).summary())


@app.command("average")
@_user_errors
def average_command(
    weights: list[Path] = typer.Argument(..., help="Weights files (model_final.pt) of runs from the same pretrained start"),
    out: Path = typer.Option(..., "--out", "-o", help="Output weights file"),
    dataset: str = typer.Option(..., "--dataset", help="Dataset the runs trained on"),
    data_root: Path = typer.Option(..., "--data-root", help="Dataset folder"),
    calibration_ids: int = typer.Option(..., "--calibration-ids", help="The runs' held-back training identities (calibrate the average)"),
    mix: Optional[list[float]] = typer.Option(None, "--mix", help="Share of each weights file, in order (default: equal)"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
) -> None:
    """Average the weights of several runs into one model ("model soup"), re-measure its BatchNorm
    statistics on the training images and fit its link calibration on the held-back identities."""
    from reid.average import average_weights_files
    from reid.calibration import calibrate_weights_file
    from reid.checkpoint import save_payload
    from reid.datasets import load_dataset
    from reid.device import resolve_device
    from reid.train import split_calibration_ids

    train, calibration = split_calibration_ids(load_dataset(dataset, data_root).train, calibration_ids)
    payload = average_weights_files(weights, train, mix, resolve_device(device))
    with atomic_path(out) as temporary:
        save_payload(payload, temporary)
        typer.echo(calibrate_weights_file(temporary, calibration, device).summary())
    typer.echo(f"wrote {out}")


@app.command("export")
@_user_errors
def export_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Weights file or training checkpoint"),
    onnx: Path = typer.Option(..., "--onnx", help="Output .onnx file"),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version"),
) -> None:
    """Export the inference path (images -> features) to ONNX with a dynamic batch axis."""
    from reid.export import export_onnx

    typer.echo(f"wrote {export_onnx(checkpoint, onnx, opset=opset)}")


if __name__ == "__main__":
    app()
