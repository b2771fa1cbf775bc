"""Re-id runtimes on the CPU: the shipped model's app network (BNNeck feature) in PyTorch vs ONNX Runtime
vs OpenVINO, on the same preprocessed crops, at the batch the app uses (one tracklet: 8 crops) and at 64.

The network is exported to ONNX once (torch.onnx, as `reid export` does, but of the BNNeck feature the
app links with); OpenVINO reads that ONNX file. Each runtime gets a warm-up, then --repeats timed passes
over the same batches taken in turn each round; crops/s median (min-max). Agreement: the largest absolute
difference of the L2-normalised features from PyTorch's.

    python -m bench.embed_runtime [--crops 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.embed import sample_crops
from bench.record import REPOSITORY, write_record
from reid.embedder import Embedder
from reid.pretrained import default_weights_path


def crops_like_the_app(count: int, seed: int = 0) -> list[np.ndarray]:
    """BGR crops of people-sized boxes (50-129 px tall) cut from the sample's frames: surveillance sizes."""
    return sample_crops(count, seed, heights=(50, 130), frame_count=40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--out", type=Path, default=REPOSITORY / "bench" / "results" / "embed_runtime.json")
    args = parser.parse_args()
    embedder = Embedder.from_checkpoint(default_weights_path(), device="cpu", feature="bnneck")
    crops = crops_like_the_app(args.crops)
    inputs = {batch: [embedder.prepare_batch(crops[i : i + batch]).float().contiguous() for i in range(0, len(crops), batch)]
              for batch in args.batches}
    network = embedder.network.float().to(memory_format=torch.contiguous_format)

    def torch_run(batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return embedder.network(batch.to(memory_format=torch.channels_last)).float().numpy()

    runners = {"torch": torch_run}
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = Path(scratch) / "reid.onnx"
        height, width = embedder.input_size
        torch.onnx.export(network, torch.zeros(2, 3, height, width), str(onnx_path), input_names=["images"],
                          output_names=["features"], dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=17, dynamo=False)
        import onnxruntime

        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        runners["onnxruntime"] = lambda batch: session.run(None, {"images": batch.numpy()})[0]
        import openvino

        core = openvino.Core()
        compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        runners["openvino"] = lambda batch: compiled(batch.numpy())[0]
        rows = {}
        reference = {batch: np.concatenate([torch_run(b) for b in batches]) for batch, batches in inputs.items()}
        for name, run in runners.items():
            for batch, batches in inputs.items():
                for b in batches[:2]:
                    run(b)  # warm-up
                out = np.concatenate([run(b) for b in batches])
                difference = float(np.abs(F.normalize(torch.from_numpy(out), dim=1).numpy()
                                          - F.normalize(torch.from_numpy(reference[batch]), dim=1).numpy()).max())
                rows[f"{name} batch {batch}"] = {"runtime": name, "batch": batch, "seconds": [], "max_abs_difference": difference}
        for _ in range(args.repeats):
            for name, run in runners.items():
                for batch, batches in inputs.items():
                    started = time.perf_counter()
                    for b in batches:
                        run(b)
                    rows[f"{name} batch {batch}"]["seconds"].append(time.perf_counter() - started)
    for key, row in rows.items():
        rates = [len(crops) / s for s in row["seconds"]]
        row["crops_per_second"] = {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}
        print(f"{key:24s} {row['crops_per_second']['median']:8.1f} crops/s ({min(rates):.1f}-{max(rates):.1f}), "
              f"max |difference| {row['max_abs_difference']:.2e}")
    for batch in args.batches:
        base = rows[f"torch batch {batch}"]["crops_per_second"]["median"]
        for name in runners:
            rows[f"{name} batch {batch}"]["vs_torch"] = rows[f"{name} batch {batch}"]["crops_per_second"]["median"] / base
    write_record(args.out, {
        "setup": f"{len(crops)} crops cut from the sample at people sizes, preprocessed once (the Embedder's resize and "
                 f"normalisation), {args.repeats} timed passes per runtime and batch after a warm-up, taken in turn",
        "model": embedder.description,
        "versions": {"torch": version("torch"), "onnxruntime": version("onnxruntime"), "openvino": version("openvino")},
        "rows": rows,
    })


if __name__ == "__main__":
    main()
