"""Fixtures for the reid tests: generated person images in real dataset layouts.

The cloth-changing fixture dataset (folder-of-identities layout) draws each identity with a fixed head
colour and a fixed two-colour leg pattern, and gives it two outfits (torso colours): cameras 0 and 1 see
outfit 0, camera 2 sees outfit 1, as in PRCC. So identity is visible, but the largest area of the image,
the torso, changes colour between cameras.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from reid.cli import app

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PERSON_SIZE = (64, 32)  # (height, width) pixels
NUM_IDENTITIES = 16
IMAGES_PER_CAMERA = 3
CAMERA_OUTFIT = {0: 0, 1: 0, 2: 1}  # camera -> outfit index


def person_image(head_rgb, torso_rgb, legs_rgb, rng: np.random.Generator) -> np.ndarray:
    """A 64 x 32 RGB uint8 'person' on a noisy background, jittered by a few pixels."""
    height, width = PERSON_SIZE
    image = rng.integers(90, 150, size=(height, width, 3)).astype(np.float32)
    dx, dy = rng.integers(-2, 3, size=2)
    body_left, body_right = 8 + dx, 24 + dx
    image[4 + dy : 16 + dy, 11 + dx : 21 + dx] = head_rgb
    image[16 + dy : 40 + dy, body_left:body_right] = torso_rgb
    legs = np.array(legs_rgb, dtype=np.float32)  # two colours: left leg / right leg
    image[40 + dy : 62 + dy, body_left : body_left + 7] = legs[0]
    image[40 + dy : 62 + dy, body_right - 7 : body_right] = legs[1]
    image += rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_rgb(path: Path, image_rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))


def identity_colours(rng: np.random.Generator, num_identities: int) -> list[dict]:
    return [
        {
            "head": rng.integers(0, 256, 3),
            "legs": rng.integers(0, 256, (2, 3)),
            "outfits": rng.integers(0, 256, (2, 3)),
        }
        for _ in range(num_identities)
    ]


@pytest.fixture(scope="session")
def cloth_changing_root(tmp_path_factory) -> Path:
    """<root>/<pid>/c<cam>_o<outfit>_<n>.jpg for 16 identities x 3 cameras x 3 images (half train, half test)."""
    root = tmp_path_factory.mktemp("cloth_changing")
    rng = np.random.default_rng(2024)
    for pid, colours in enumerate(identity_colours(rng, NUM_IDENTITIES), start=1):
        for camera, outfit in CAMERA_OUTFIT.items():
            for index in range(IMAGES_PER_CAMERA):
                image = person_image(colours["head"], colours["outfits"][outfit], colours["legs"], rng)
                write_rgb(root / f"{pid:03d}" / f"c{camera}_o{outfit}_{index:04d}.jpg", image)
    return root


@pytest.fixture()
def small_train_root(tmp_path) -> Path:
    """3 identities x 2 cameras x 2 images: 3 batches of P 2 x K 2 per epoch."""
    rng = np.random.default_rng(5)
    for pid, colours in enumerate(identity_colours(rng, 3)):
        for camera in range(2):
            for index in range(2):
                image = person_image(colours["head"], colours["outfits"][camera], colours["legs"], rng)
                write_rgb(tmp_path / "data" / f"p{pid}" / f"c{camera}_o{camera}_{index}.jpg", image)
    return tmp_path / "data"


@pytest.fixture()
def tiny_image() -> np.ndarray:
    """A small person image for layout tests (the parsers never look at pixels, the loaders do)."""
    return person_image((200, 40, 40), (40, 40, 200), ((10, 10, 10), (240, 240, 240)), np.random.default_rng(0))


@pytest.fixture(scope="session")
def cuhk03_root(tmp_path_factory):
    """CUHK03 layout: 8 train and 4 val identities, 2 views x 2 images, both box sets."""
    root = tmp_path_factory.mktemp("cuhk03")
    rng = np.random.default_rng(3)
    for split, count in (("train", 8), ("val", 4)):
        for pid, colours in enumerate(identity_colours(rng, count)):
            for view in (0, 1):
                for index in range(2):
                    image = person_image(colours["head"], colours["outfits"][0], colours["legs"], rng)
                    for box_set in ("detected", "labeled"):
                        write_rgb(root / box_set / split / f"{pid:04d}_{5 * view + index:02d}.jpg", image)
    return root


@pytest.fixture()
def trained_weights(small_train_root, tmp_path) -> Path:
    """One quick epoch of the tiny config from random init, through `reid train`."""
    result = CliRunner().invoke(app, [
        "train", "--config", str(CONFIGS / "cssc_tiny.yaml"), "--data-root", str(small_train_root),
        "--out", str(tmp_path / "run"), "--device", "cpu", "--epochs", "1", "--pretrained", "none",
        "--ids-per-batch", "2", "--images-per-id", "2", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    assert "epoch 1/1  loss" in result.stdout
    assert f"final weights: {tmp_path / 'run' / 'model_final.pt'}" in result.stdout
    return tmp_path / "run" / "model_final.pt"
