"""CUHK03 val: the shipped re-id model against the ImageNet baseline and the colour histogram, same run.

Protocol: `../shared/data/CUHK03/detected/val` (100 identities the model never saw; detector boxes, the
closest to a tracker's crops), queries = camera view 0, gallery = view 1, flip-averaged L2-normalised
features, reid.metrics.evaluate (rank-1, mAP). Every descriptor goes through the interface the app uses
(BGR crops in, features out).

Clothing-colour robustness: every query's upper and lower garments (from pose keypoints, as in training)
are recoloured with a fixed-seed random hue, saturation and value, and the same queries are scored again.
The drop in rank-1 says how much a descriptor leans on clothing colour.

Re-ranked: the clean queries once more with k-reciprocal re-ranking (reid.rerank, as `reid eval --rerank`),
which is transductive and reported apart from the plain ranking.

    python -m bench.reid_val [--data-root ../shared/data/CUHK03] [--weights reid/weights/...pt]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from bench.record import write_record
from cctrack.histogram import ColourHistogramEmbedder
from reid import Embedder
from reid.augment import recolour_garments
from reid.datasets import load_dataset
from reid.datasets.images import read_rgb_uint8
from reid.garments import cached_keypoints, garment_masks
from reid.metrics import evaluate
from reid.pretrained import DEFAULT_WEIGHTS_PATH
from reid.rerank import k_reciprocal_distances

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "bench" / "results"
CROP_SIZE = (256, 128)  # (height, width) the crops are handed over at; each descriptor resizes as it needs
RECOLOUR_SEED = 7


def read_crops(samples) -> list[np.ndarray]:
    """BGR uint8 crops at CROP_SIZE."""
    return [np.ascontiguousarray(read_rgb_uint8(s.path, CROP_SIZE).permute(1, 2, 0).numpy()[:, :, ::-1]) for s in samples]


def recoloured(crops: list[np.ndarray], keypoints: np.ndarray) -> list[np.ndarray]:
    """Every crop with both garments recoloured (fixed seed)."""
    rgb = torch.from_numpy(np.stack([crop[:, :, ::-1] for crop in crops]).copy()).permute(0, 3, 1, 2).float() / 255
    masks = torch.from_numpy(garment_masks(keypoints, *CROP_SIZE))
    state = torch.get_rng_state()
    torch.manual_seed(RECOLOUR_SEED)
    try:
        out = recolour_garments(rgb, masks, torch.ones(len(crops), dtype=torch.bool))
    finally:
        torch.set_rng_state(state)
    pixels = (out * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(image[:, :, ::-1]) for image in pixels]


def score(query_features: np.ndarray, gallery_features: np.ndarray, query, gallery, rerank: bool = False) -> dict:
    if rerank:
        distances = k_reciprocal_distances(torch.as_tensor(query_features), torch.as_tensor(gallery_features))
    else:
        distances = 2 - 2 * query_features @ gallery_features.T
    metrics = evaluate(distances, [s.pid for s in query], [s.pid for s in gallery],
                       [s.camid for s in query], [s.camid for s in gallery])
    return {"rank1": 100 * metrics["rank1"], "mAP": 100 * metrics["mAP"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPOSITORY.parent / "shared" / "data" / "CUHK03")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_PATH)
    parser.add_argument("--out", type=Path, default=RESULTS / "reid_val.json")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))

    dataset = load_dataset("cuhk03", args.data_root)
    query_crops, gallery_crops = read_crops(dataset.query), read_crops(dataset.gallery)
    keypoints = cached_keypoints([s.path for s in dataset.query], RESULTS / "cuhk03_val_query_keypoints.npz")
    recoloured_queries = recoloured(query_crops, keypoints)

    descriptors = {
        "shipped CSSC-MobileNetV2, BNNeck feature (the app's)": Embedder.from_checkpoint(args.weights, device="cpu", flip=True),
        "shipped CSSC-MobileNetV2, f_cssc (paper protocol)": Embedder.from_checkpoint(args.weights, device="cpu", flip=True, feature="cssc"),
        "ImageNet MobileNetV2 backbone (old default)": Embedder.imagenet_backbone("mobilenetv2", device="cpu", flip=True),
        "colour histogram": ColourHistogramEmbedder(),
    }
    rows = {}
    for name, embedder in descriptors.items():
        started = time.perf_counter()
        query_features, gallery_features = embedder.embed(query_crops), embedder.embed(gallery_crops)
        clean = score(query_features, gallery_features, dataset.query, dataset.gallery)
        garments = score(embedder.embed(recoloured_queries), gallery_features, dataset.query, dataset.gallery)
        reranked = score(query_features, gallery_features, dataset.query, dataset.gallery, rerank=True)
        rows[name] = {"clean": clean, "recoloured_queries": garments, "clean_k_reciprocal_reranked": reranked,
                      "rank1_drop": clean["rank1"] - garments["rank1"], "seconds": time.perf_counter() - started}
        print(f"{name:<55} rank-1 {clean['rank1']:5.1f}  mAP {clean['mAP']:5.1f}  | recoloured queries: "
              f"rank-1 {garments['rank1']:5.1f} (drop {rows[name]['rank1_drop']:4.1f})  | re-ranked: "
              f"rank-1 {reranked['rank1']:5.1f}  mAP {reranked['mAP']:5.1f}")
    write_record(args.out, {
        "protocol": "CUHK03 detected val: 100 ids, query view 0 (%d), gallery view 1 (%d)" % (len(dataset.query), len(dataset.gallery)),
        "weights": str(args.weights.relative_to(REPOSITORY) if args.weights.is_relative_to(REPOSITORY) else args.weights),
        "results": rows,
    })


if __name__ == "__main__":
    main()
