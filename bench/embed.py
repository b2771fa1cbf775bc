"""Benchmark: crops/s of `reid.Embedder` against a plain torchreid-style feature extractor.

Both run the same network on the same real crops (random person-shaped boxes on frames of the bundled
sample video). The baseline is what torchreid's FeatureExtractor does: per batch, PIL images through
torchvision Resize / ToTensor / Normalize, an fp32 forward pass, `.cpu()` of every batch. The Embedder
resizes with cv2 into one uint8 batch, copies it once, normalises on the device, runs channels_last
(fp16 on CUDA by default; bf16 as an extra row) and copies features back once.

Networks: the shipped CSSC-MobileNetV2 at 128x64 (the app's default, BNNeck feature), CSSC-ResNet-50 at
256x128 and 384x192, CSSC-MobileNetV2 at 256x128, and the MobileNetV2 ImageNet backbone (the old
default); weights do not change speed, so the other CSSC nets are randomly initialised.
FLOPs per crop are counted with torch.utils.flop_counter (2 x MACs of convs and matmuls) next to the spec's
24.3 GFLOPs at 384x192 scaled by pixel count; on CUDA the table also shows achieved TFLOP/s and the
fraction of the GPU's dense fp16/bf16 peak (--peak-tflops, or a known value for H100 / H200 / A100).

    .venv/bin/python bench/embed.py                         # CPU: 64 crops, warm-up + 5 passes (about 6 minutes on 2 cores)
    .venv/bin/python bench/embed.py --device cuda --crops 4096 --batch-size 256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from bench.record import header, timed  # noqa: E402
from cctrack.files import write_json_atomic  # noqa: E402
from reid.backbones import PooledBackbone, build_backbone  # noqa: E402
from reid.checkpoint import (  # noqa: E402
    BNNeckFeature,
    bnneck_state,
    load_checkpoint,
    model_from_payload,
)
from reid.embedder import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, Embedder, resolve_device  # noqa: E402
from reid.model import build_model  # noqa: E402
from reid.pretrained import default_weights_path  # noqa: E402

SAMPLE_VIDEO = REPOSITORY / "samples" / "pets09" / "cam_right.mp4"
RESULTS = REPOSITORY / "bench" / "results"
SPEC_GFLOPS_384X192 = 24.3  # CSSC-ResNet-50, spec "Size check"
PEAK_DENSE_HALF_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # vendor dense fp16/bf16 tensor-core peaks


def sample_crops(count: int, seed: int = 0, heights: tuple[int, int] = (80, 241), frame_count: int = 20) -> list[np.ndarray]:
    """`count` person-shaped crops (height in [heights[0], heights[1]) px, width 0.35..0.5 of it) from the
    first `frame_count` real frames of the sample's cam_right."""
    capture = cv2.VideoCapture(str(SAMPLE_VIDEO))
    frames = []
    while len(frames) < frame_count:
        ok, frame = capture.read()
        if not ok:
            raise SystemExit(f"cannot read frames from {SAMPLE_VIDEO}")
        frames.append(frame)
    capture.release()
    generator = np.random.default_rng(seed)
    crops = []
    for _ in range(count):
        frame = frames[generator.integers(len(frames))]
        height = int(generator.integers(*heights))
        width = int(height * generator.uniform(0.35, 0.5))
        top = int(generator.integers(0, frame.shape[0] - height))
        left = int(generator.integers(0, frame.shape[1] - width))
        crops.append(np.ascontiguousarray(frame[top : top + height, left : left + width]))
    return crops


def torchreid_style_embed(
    network: torch.nn.Module,
    crops: list[np.ndarray],
    input_size: tuple[int, int],
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """The baseline: PIL + torchvision transforms per batch, fp32, `.cpu()` per batch."""
    normalize = transforms.Normalize(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)
    transform = transforms.Compose([transforms.Resize(input_size), transforms.ToTensor(), normalize])
    batches = []
    with torch.no_grad():
        for start in range(0, len(crops), batch_size):
            batch_crops = crops[start : start + batch_size]
            images = [Image.fromarray(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)) for crop in batch_crops]
            batch = torch.stack([transform(image) for image in images]).to(device)
            batches.append(network(batch).cpu())
    return F.normalize(torch.cat(batches), dim=1).numpy()


def count_gflops(network: torch.nn.Module, input_size: tuple[int, int]) -> float:
    """GFLOPs of one forward pass on one crop (fp32, CPU)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        network.eval()(torch.zeros(1, 3, *input_size))
    return counter.get_total_flops() / 1e9


def crops_per_second(embed, crops: list[np.ndarray], device: torch.device, repeats: int) -> dict[str, float]:
    """Crops/s over all crops: one untimed warm-up pass, then `repeats` timed passes; median, min, max."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    seconds = timed(lambda: embed(crops), repeats, warmups=1, synchronize=synchronize)
    return {"median": round(len(crops) / seconds["median"], 1), "min": round(len(crops) / seconds["max"], 1),
            "max": round(len(crops) / seconds["min"], 1), "passes": repeats}


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override is not None or device.type != "cuda":
        return override
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_DENSE_HALF_TFLOPS.items() if key in name), None)


def networks() -> list[tuple[str, torch.nn.Module, tuple[int, int]]]:
    """(label, network, input size) for every benchmarked configuration; built once, on the CPU."""
    resnet = build_model("resnet50", num_ids=0, pretrained="none")
    mobilenet = build_model("mobilenetv2", num_ids=0, pretrained="none")
    imagenet_mobilenet = PooledBackbone(build_backbone("mobilenetv2", pretrained="imagenet"), pooling="avg")
    shipped_path = default_weights_path()
    shipped_payload = load_checkpoint(shipped_path)
    shipped_model, shipped_arch = model_from_payload(shipped_payload, shipped_path)
    shipped = BNNeckFeature(shipped_model, **bnneck_state(shipped_payload, shipped_path))
    return [
        ("shipped CSSC-MobileNetV2 128x64 (default)", shipped, tuple(shipped_arch["input_size"])),
        ("CSSC-R50 256x128", resnet, (256, 128)),
        ("CSSC-R50 384x192", resnet, (384, 192)),
        ("CSSC-MobileNetV2 256x128", mobilenet, (256, 128)),
        ("MobileNetV2 ImageNet backbone 256x128", imagenet_mobilenet, (256, 128)),
    ]


def run(device: torch.device, crop_count: int, batch_size: int, repeats: int, peak: float | None) -> list[dict]:
    crops = sample_crops(crop_count)
    precisions = [None, "bf16"] if device.type == "cuda" else [None]
    rows = []
    for label, network, input_size in networks():
        # Embedder converts the network in place, so every run starts from a plain fp32 CPU copy.
        network.to(device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format).eval()
        counted_gflops = count_gflops(network, input_size)
        spec_gflops = SPEC_GFLOPS_384X192 * input_size[0] * input_size[1] / (384 * 192) if "R50" in label else None
        network.to(device=device)
        baseline_range = crops_per_second(
            lambda batch: torchreid_style_embed(network, batch, input_size, batch_size, device), crops, device, repeats
        )
        baseline = baseline_range["median"]
        for half in precisions:
            embedder = Embedder(
                network, dim=network.feature_dim, input_size=input_size, description=label, weights_path=Path(),
                device=device, half=half, batch_size=batch_size,
            )
            ours_range = crops_per_second(embedder.embed, crops, device, repeats)
            ours = ours_range["median"]
            achieved_tflops = ours * counted_gflops / 1e3
            rows.append({
                "network": label, "dtype": str(embedder.dtype).removeprefix("torch."), "device": str(device),
                "crops": crop_count, "batch_size": batch_size,
                "embedder_crops_per_s": ours, "torchreid_style_fp32_crops_per_s": baseline,
                "embedder_crops_per_s_range": ours_range, "torchreid_style_fp32_crops_per_s_range": baseline_range,
                "speedup": round(ours / baseline, 2),
                "gflops_per_crop_counted": round(counted_gflops, 2),
                "gflops_per_crop_spec": round(spec_gflops, 2) if spec_gflops else None,
                "achieved_tflops": round(achieved_tflops, 3),
                "fraction_of_peak": round(achieved_tflops / peak, 3) if peak else None,
            })
    return rows


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'network':<40} {'dtype':<9} {'ours/s (min-max)':>19} {'base/s (min-max)':>19} {'ratio':>6} "
        f"{'GFLOP':>7} {'spec':>6} {'TFLOP/s':>8} {'peak':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        spec = f"{row['gflops_per_crop_spec']:.1f}" if row["gflops_per_crop_spec"] else "-"
        peak = f"{row['fraction_of_peak']:.1%}" if row["fraction_of_peak"] is not None else "-"
        print(
            f"{row['network']:<40} {row['dtype']:<9} {_median_range(row['embedder_crops_per_s_range']):>19} "
            f"{_median_range(row['torchreid_style_fp32_crops_per_s_range']):>19} {row['speedup']:>5.2f}x "
            f"{row['gflops_per_crop_counted']:>7.2f} {spec:>6} {row['achieved_tflops']:>8.3f} {peak:>6}"
        )


def _median_range(crops_per_s: dict) -> str:
    return f"{crops_per_s['median']:.1f} ({crops_per_s['min']:.1f}-{crops_per_s['max']:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--crops", type=int, default=None, help="crops per pass (default 64 CPU, 4096 CUDA)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 16 on CPU, 256 on CUDA")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes after one warm-up pass; median kept")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense fp16/bf16 peak of the GPU")
    parser.add_argument("--output", type=Path, default=RESULTS / "embed.json")
    arguments = parser.parse_args()

    device = resolve_device(arguments.device)
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.backends.cudnn.benchmark = True  # fixed shapes per configuration: let cuDNN pick kernels once
    crop_count = arguments.crops or (4096 if on_gpu else 64)
    batch_size = arguments.batch_size or (256 if on_gpu else 16)
    repeats = arguments.repeats
    peak = peak_tflops(device, arguments.peak_tflops)
    rows = run(device, crop_count, batch_size, repeats, peak)
    print_table(rows)

    report = {
        **header(device),
        "timing": f"{crop_count} crops per pass, batch {batch_size}; one warm-up pass, then {repeats} timed passes; "
                  "crops/s is the median pass, with the slowest and fastest pass as min-max",
        "peak_tflops": peak,
        "rows": rows,
    }
    write_json_atomic(arguments.output, report)
    print(f"wrote {arguments.output}")


if __name__ == "__main__":
    main()
