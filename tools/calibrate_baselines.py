"""Fit the link calibrations of the two baseline descriptors (cctrack/baseline_calibrations.json).

The same procedure as a trained model's calibration (reid.calibration.fit_calibration), on the same
held-back CUHK03 train identities the shipped model never trained on:

    python tools/calibrate_baselines.py [--data-root ../shared/data/CUHK03] [--calibration-ids 60]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cctrack.files import write_json_atomic
from cctrack.embed import BASELINE_CALIBRATIONS_PATH
from cctrack.histogram import ColourHistogramEmbedder
from reid import Embedder
from reid.calibration import fit_calibration
from reid.datasets import load_dataset
from reid.train import split_calibration_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "CUHK03")
    parser.add_argument("--calibration-ids", type=int, default=60)
    args = parser.parse_args()
    _, samples = split_calibration_ids(load_dataset("cuhk03", args.data_root).train, args.calibration_ids)
    descriptors = {
        "imagenet_mobilenetv2": (Embedder.imagenet_backbone("mobilenetv2", device="cpu").embed, "imagenet avg-pooled"),
        "colour_histogram": (ColourHistogramEmbedder().embed, "colour histogram"),
    }
    calibrations = {}
    for name, (embed, feature) in descriptors.items():
        calibration = fit_calibration(embed, samples, feature=feature)
        print(f"{name}: {calibration.summary()}")
        calibrations[name] = calibration.as_dict()
    write_json_atomic(BASELINE_CALIBRATIONS_PATH, calibrations)
    print(f"wrote {BASELINE_CALIBRATIONS_PATH}")


if __name__ == "__main__":
    main()
