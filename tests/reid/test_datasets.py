"""Dataset parsers on small trees with the real datasets' naming, and on broken layouts."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.reid.conftest import write_rgb
from reid.datasets import UNKNOWN_CLOTHES, load_dataset, load_training_sets
from reid.datasets.images import ImageDataset
from reid.errors import ReidError
from reid.train import TrainConfig
from reid.transforms import build_test_transform, build_train_transform


def make_files(root: Path, relative_paths: list[str], image: np.ndarray) -> Path:
    for relative in relative_paths:
        write_rgb(root / relative, image)
    return root


# ---------------------------------------------------------------- PRCC


def prcc_tree(root: Path, image: np.ndarray) -> Path:
    files = [
        "rgb/train/001/A_cropped_rgb001.jpg", "rgb/train/001/B_cropped_rgb002.jpg", "rgb/train/001/C_cropped_rgb003.jpg",
        "rgb/train/007/A_cropped_rgb010.jpg", "rgb/train/007/C_cropped_rgb011.jpg",
        "rgb/val/003/A_cropped_rgb020.jpg",
        "rgb/test/A/002/cropped_rgb100.jpg", "rgb/test/A/002/cropped_rgb101.jpg", "rgb/test/A/005/cropped_rgb102.jpg",
        "rgb/test/B/002/cropped_rgb200.jpg", "rgb/test/B/005/cropped_rgb201.jpg",
        "rgb/test/C/002/cropped_rgb300.jpg", "rgb/test/C/005/cropped_rgb301.jpg", "rgb/test/C/005/cropped_rgb302.jpg",
    ]
    return make_files(root, files, image)


def test_prcc_cameras_clothes_and_relabelled_train(tmp_path, tiny_image):
    dataset = load_dataset("prcc", prcc_tree(tmp_path / "prcc", tiny_image))
    assert dataset.name == "prcc" and dataset.num_train_ids == 2
    train = {s.path.name: s for s in dataset.train}
    # pid 001 -> label 0, 007 -> 1; camera from the file-name prefix; A and B share an outfit, C differs.
    assert (train["A_cropped_rgb001.jpg"].pid, train["A_cropped_rgb001.jpg"].camid) == (0, 0)
    assert (train["B_cropped_rgb002.jpg"].camid, train["C_cropped_rgb003.jpg"].camid) == (1, 2)
    assert train["A_cropped_rgb001.jpg"].clothes_id == train["B_cropped_rgb002.jpg"].clothes_id
    assert train["A_cropped_rgb001.jpg"].clothes_id != train["C_cropped_rgb003.jpg"].clothes_id
    assert train["C_cropped_rgb011.jpg"].pid == 1
    # Test: gallery = camera A, queries = B and C, pids are the folder numbers, camera = folder letter.
    assert sorted((s.pid, s.camid) for s in dataset.gallery) == [(2, 0), (2, 0), (5, 0)]
    assert sorted((s.pid, s.camid) for s in dataset.query) == [(2, 1), (2, 2), (5, 1), (5, 2), (5, 2)]
    by_name = {s.path.name: s for s in dataset.query + dataset.gallery}
    assert by_name["cropped_rgb100.jpg"].clothes_id == by_name["cropped_rgb200.jpg"].clothes_id == 2 * 2
    assert by_name["cropped_rgb300.jpg"].clothes_id == 2 * 2 + 1


def test_prcc_accepts_the_rgb_folder_itself(tmp_path, tiny_image):
    dataset = load_dataset("prcc", prcc_tree(tmp_path / "prcc", tiny_image) / "rgb")
    assert len(dataset.train) == 5 and len(dataset.query) == 5


def test_prcc_missing_test_camera_names_the_folder(tmp_path, tiny_image):
    root = make_files(tmp_path / "prcc", ["rgb/train/001/A_x.jpg", "rgb/test/A/001/x.jpg", "rgb/test/B/001/x.jpg"],
                      tiny_image)
    with pytest.raises(ReidError, match=r"PRCC layout: missing folder .*rgb/test/C"):
        load_dataset("prcc", root)


def test_prcc_train_file_without_camera_prefix_is_named(tmp_path, tiny_image):
    root = prcc_tree(tmp_path / "prcc", tiny_image)
    write_rgb(root / "rgb/train/001/cropped_rgb999.jpg", tiny_image)
    with pytest.raises(ReidError, match=r"file name 'cropped_rgb999.jpg' .* does not match <A\|B\|C>_\*.jpg"):
        load_dataset("prcc", root)


# ---------------------------------------------------------------- LTCC


def ltcc_tree(root: Path, image: np.ndarray) -> Path:
    files = [
        "train/001_1_c11_015861.png", "train/001_2_c3_015862.png", "train/094_1_c1_000101.png",
        "query/010_1_c1_000001.png", "query/010_2_c4_000002.png",
        "test/010_1_c2_000003.png", "test/010_1_c1_000004.png", "test/010_3_c5_000005.png", "test/011_1_c2_000006.png",
    ]
    return make_files(root, files, image)


def test_ltcc_pid_outfit_camera_from_names(tmp_path, tiny_image):
    dataset = load_dataset("ltcc", ltcc_tree(tmp_path / "LTCC_ReID", tiny_image))
    assert dataset.num_train_ids == 2
    assert sorted((s.pid, s.camid) for s in dataset.train) == [(0, 2), (0, 10), (1, 0)]
    query = {s.path.name: s for s in dataset.query}
    gallery = {s.path.name: s for s in dataset.gallery}
    assert (query["010_1_c1_000001.png"].pid, query["010_1_c1_000001.png"].camid) == (10, 0)
    # Outfits are per person and shared across splits: query outfit 1 == gallery outfit 1 of pid 10 only.
    assert query["010_1_c1_000001.png"].clothes_id == gallery["010_1_c2_000003.png"].clothes_id
    assert query["010_1_c1_000001.png"].clothes_id != query["010_2_c4_000002.png"].clothes_id
    assert gallery["011_1_c2_000006.png"].clothes_id != gallery["010_1_c2_000003.png"].clothes_id
    assert len({s.clothes_id for s in dataset.train}) == 3


def test_ltcc_parses_file_names_not_paths(tmp_path, tiny_image):
    # A parent folder that itself looks like an LTCC name must not leak into the parsed ids.
    dataset = load_dataset("ltcc", ltcc_tree(tmp_path / "999_9_c9_backup", tiny_image))
    assert {s.camid for s in dataset.query} == {0, 3}


def test_ltcc_wrong_layouts(tmp_path, tiny_image):
    root = ltcc_tree(tmp_path / "ltcc", tiny_image)
    (root / "test").rename(root / "gallery")
    with pytest.raises(ReidError, match=r"LTCC layout: missing folder .*ltcc/test \(expected test/PID_OUTFIT_cCAM_\*.png\)"):
        load_dataset("ltcc", root)
    (root / "gallery").rename(root / "test")
    write_rgb(root / "query" / "10_c1.png", tiny_image)
    with pytest.raises(ReidError, match=r"file name '10_c1.png' .* does not match PID_OUTFIT_cCAM_\*.png"):
        load_dataset("ltcc", root)


def test_missing_root_and_empty_split(tmp_path, tiny_image):
    with pytest.raises(ReidError, match="LTCC data root not found"):
        load_dataset("ltcc", tmp_path / "nowhere")
    root = ltcc_tree(tmp_path / "ltcc", tiny_image)
    for path in (root / "query").iterdir():
        path.unlink()
    with pytest.raises(ReidError, match=r"no images matching PID_OUTFIT_cCAM_\*.png in .*query"):
        load_dataset("ltcc", root)


# ---------------------------------------------------------------- Celeb-reID and Market-1501


def test_celeb_every_image_is_its_own_camera(tmp_path, tiny_image):
    files = ["train/1_1_0.jpg", "train/1_2_0.jpg", "train/4_1_0.jpg", "query/20_1_0.jpg", "gallery/20_2_0.jpg",
             "gallery/20_3_1.jpg", "gallery/21_1_0.jpg"]
    dataset = load_dataset("celeb", make_files(tmp_path / "Celeb-reID", files, tiny_image))
    everything = dataset.train + dataset.query + dataset.gallery
    assert len({s.camid for s in everything}) == len(everything)
    assert {s.clothes_id for s in everything} == {UNKNOWN_CLOTHES}
    assert dataset.num_train_ids == 2 and [s.pid for s in dataset.query] == [20]
    assert sorted(s.pid for s in dataset.gallery) == [20, 20, 21]


def test_market_junk_and_distractors(tmp_path, tiny_image):
    files = [
        "bounding_box_train/0002_c1s1_000451_03.jpg", "bounding_box_train/0002_c2s1_000551_01.jpg",
        "bounding_box_train/0007_c3s3_077419_03.jpg", "bounding_box_train/-1_c1s1_000001_00.jpg",
        "query/0001_c1s1_001051_00.jpg",
        "bounding_box_test/0001_c2s1_000301_01.jpg", "bounding_box_test/0000_c1s1_000002_01.jpg",
        "bounding_box_test/-1_c1s1_000401_03.jpg", "bounding_box_test/Thumbs.db",
    ]
    root = make_files(tmp_path / "Market-1501-v15.09.15", [f for f in files if f.endswith(".jpg")], tiny_image)
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"not an image")
    dataset = load_dataset("market", root)
    assert dataset.num_train_ids == 2 and sorted((s.pid, s.camid) for s in dataset.train) == [(0, 0), (0, 1), (1, 2)]
    assert [(s.pid, s.camid) for s in dataset.query] == [(1, 0)]
    assert sorted((s.pid, s.camid) for s in dataset.gallery) == [(0, 0), (1, 1)]  # distractor kept, junk dropped


# ---------------------------------------------------------------- folder of identities


def test_folder_split_rule(cloth_changing_root):
    dataset = load_dataset("folder", cloth_changing_root)
    train_pids = {s.path.parent.name for s in dataset.train}
    test_pids = {s.pid for s in dataset.query + dataset.gallery}
    assert train_pids == {f"{pid:03d}" for pid in range(1, 9)} and test_pids == set(range(9, 17))
    assert dataset.num_train_ids == 8 and {s.pid for s in dataset.train} == set(range(8))
    # One query per (identity, camera): the first file name; the rest is gallery.
    assert len(dataset.query) == 8 * 3 and len(dataset.gallery) == 8 * 3 * 2
    assert all(s.path.name.endswith("_0000.jpg") for s in dataset.query)
    by_pid_camera = {(s.pid, s.camid): s.clothes_id for s in dataset.query}
    assert by_pid_camera[(9, 0)] == by_pid_camera[(9, 1)] != by_pid_camera[(9, 2)]
    assert by_pid_camera[(9, 0)] != by_pid_camera[(10, 0)]  # outfit "o0" of two people are different clothes


def test_folder_fraction_all_test_and_bad_names(tmp_path, tiny_image):
    root = make_files(tmp_path / "crops", ["alice/cam2_red_0001.jpg", "alice/cam1_blue_0002.jpg",
                                           "bob/cam1_red_0001.png"], tiny_image)
    dataset = load_dataset("folder", root, folder_train_fraction=0.0)
    assert dataset.train == [] and len(dataset.query) == 3 and dataset.gallery == []
    assert {s.pid for s in dataset.query} == {0, 1} and {s.camid for s in dataset.query} == {0, 1}
    write_rgb(root / "bob" / "frame0001.jpg", tiny_image)
    with pytest.raises(ReidError, match=r"'frame0001.jpg' .* does not match <cam>_<clothes>_<anything>.jpg"):
        load_dataset("folder", root)
    with pytest.raises(ReidError, match="unknown dataset 'duke'"):
        load_dataset("duke", root)


# ---------------------------------------------------------------- images and transforms


def test_image_dataset_shapes_and_train_augmentation(cloth_changing_root):
    dataset = load_dataset("folder", cloth_changing_root)
    test_items = ImageDataset(dataset.query, build_test_transform((128, 64)))
    image, pid, camid, clothes = test_items[0]
    assert image.shape == (3, 128, 64) and image.dtype == torch.float32
    assert (pid, camid, clothes) == (dataset.query[0].pid, dataset.query[0].camid, dataset.query[0].clothes_id)
    assert torch.equal(image, test_items[0][0])  # the test transform is deterministic
    # The background (grey ~120) normalises to about 0; erased boxes are exactly 0 in all channels.
    train_items = ImageDataset(dataset.train, build_train_transform((128, 64), erasing_probability=1.0))
    torch.manual_seed(0)
    augmented = train_items[0][0]
    assert augmented.shape == (3, 128, 64)
    assert (augmented == 0).all(dim=0).sum() >= 0.02 * 128 * 64


def test_unreadable_image_is_a_reid_error(tmp_path, tiny_image):
    root = make_files(tmp_path / "crops", ["p1/c1_o1_0001.jpg"], tiny_image)
    (root / "p1" / "c1_o1_0001.jpg").write_bytes(b"truncated")
    dataset = load_dataset("folder", root, folder_train_fraction=0.0)
    with pytest.raises(ReidError, match="cannot read image .*c1_o1_0001.jpg"):
        ImageDataset(dataset.query, build_test_transform((128, 64)))[0]


# ---------------------------------------------------------------- folder: explicit split, protocols, several roots


def split_tree(root: Path, image: np.ndarray) -> Path:
    files = ["train/ann/c1_red_0001.jpg", "train/ann/c2_red_0002.jpg", "train/bo/c1_blue_0001.jpg",
             "train/bo/c3_blue_0002.jpg", "test/cy/c1_red_0001.jpg", "test/cy/c2_grey_0002.jpg",
             "test/cy/c2_grey_0003.jpg", "test/dee/c2_red_0001.jpg", "test/dee/c3_red_0002.jpg"]
    return make_files(root, files, image)


def test_folder_train_and_test_subfolders_set_the_split(tmp_path, tiny_image):
    # The fraction is not used: train/ and test/ decide, whatever it says.
    dataset = load_dataset("folder", split_tree(tmp_path / "crops", tiny_image), folder_train_fraction=0.0)
    assert {s.path.parent.name for s in dataset.train} == {"ann", "bo"} and dataset.num_train_ids == 2
    assert {s.path.parent.name for s in dataset.query + dataset.gallery} == {"cy", "dee"}
    # Camera ids are shared by the splits: "c1" is one camera in train/ and test/.
    camera_of = {(s.path.parent.parent.name, s.path.name): s.camid for s in dataset.train + dataset.query + dataset.gallery}
    assert camera_of[("train", "c1_red_0001.jpg")] == camera_of[("test", "c1_red_0001.jpg")] == 0
    assert sorted((s.path.parent.name, s.camid) for s in dataset.query) == [("cy", 0), ("cy", 1), ("dee", 1), ("dee", 2)]
    assert [s.path.name for s in dataset.gallery] == ["c2_grey_0003.jpg"]


def test_folder_split_subfolder_mistakes_are_named(tmp_path, tiny_image):
    root = split_tree(tmp_path / "crops", tiny_image)
    make_files(root, ["eve/c1_red_0001.jpg"], tiny_image)
    with pytest.raises(ReidError, match=r"has train/ and test/ but also identity folder\(s\) eve; put each identity"):
        load_dataset("folder", root)
    (root / "eve" / "c1_red_0001.jpg").rename(root / "test" / "dee" / "c1_red_0009.jpg")
    make_files(root, ["test/ann/c1_red_0009.jpg"], tiny_image)
    with pytest.raises(ReidError, match=r"identity folder\(s\) ann are in both train/ and test/"):
        load_dataset("folder", root)
    (root / "test").rename(root / "val")
    with pytest.raises(ReidError, match=r"has train/ but no test/; an explicit split needs both"):
        load_dataset("folder", root)


def test_folder_split_file_sets_the_split_and_names_its_mistakes(tmp_path, tiny_image):
    root = split_tree(tmp_path / "crops", tiny_image)
    flat = tmp_path / "flat"
    for path in root.glob("*/*/*.jpg"):  # the same identities without train/ and test/
        (flat / path.parent.name).mkdir(parents=True, exist_ok=True)
        path.rename(flat / path.parent.name / path.name)
    (flat / "split.json").write_text(json.dumps({"train": ["cy", "dee"], "test": ["ann", "bo"]}))
    dataset = load_dataset("folder", flat, folder_train_fraction=1.0)  # the file decides, not the fraction
    assert {s.path.parent.name for s in dataset.train} == {"cy", "dee"} and dataset.num_train_ids == 2
    assert {s.path.parent.name for s in dataset.query + dataset.gallery} == {"ann", "bo"}
    for split, message in (({"train": ["cy", "dee", "ann"], "test": ["ann", "bo"]}, "ann of .* are in both train and test"),
                           ({"train": ["cy", "dee", "zed"], "test": ["ann", "bo"]}, "zed of .* are listed but missing"),
                           ({"train": ["cy"], "test": ["ann", "bo"]}, "dee of .* are in neither train nor test"),
                           ({"train": "cy"}, "must be JSON")):
        (flat / "split.json").write_text(json.dumps(split))
        with pytest.raises(ReidError, match=message):
            load_dataset("folder", flat)


def test_folder_cross_camera_protocol(cloth_changing_root):
    test_pids = set(range(9, 17))
    dataset = load_dataset("folder", cloth_changing_root, folder_protocol="cross-camera")
    # Queries: every test image of the first camera (c0); gallery: every test image of c1 and c2.
    assert {s.camid for s in dataset.query} == {0} and len(dataset.query) == 8 * 3
    assert {s.camid for s in dataset.gallery} == {1, 2} and len(dataset.gallery) == 8 * 3 * 2
    assert {s.pid for s in dataset.query} == {s.pid for s in dataset.gallery} == test_pids
    assert dataset.train == load_dataset("folder", cloth_changing_root).train
    chosen = load_dataset("folder", cloth_changing_root, folder_protocol="cross-camera", folder_query_camera="c2")
    assert {s.camid for s in chosen.query} == {2} and {s.camid for s in chosen.gallery} == {0, 1}


def test_folder_protocol_mistakes_are_named(cloth_changing_root):
    with pytest.raises(ReidError, match=r"query camera 'c7' has no test images; cameras with test images: c0, c1, c2"):
        load_dataset("folder", cloth_changing_root, folder_protocol="cross-camera", folder_query_camera="c7")
    with pytest.raises(ReidError, match="a query camera only applies to the cross-camera protocol"):
        load_dataset("folder", cloth_changing_root, folder_query_camera="c1")
    with pytest.raises(ReidError, match="unknown protocol 'random'; expected one of first-per-camera, cross-camera"):
        load_dataset("folder", cloth_changing_root, folder_protocol="random")


def test_training_sets_from_several_roots_get_fresh_ids(tmp_path, tiny_image, small_train_root):
    main_root = split_tree(tmp_path / "crops", tiny_image)
    main = load_dataset("folder", main_root)
    extra = load_dataset("folder", small_train_root, folder_train_fraction=1.0)
    merged = load_training_sets("folder", main_root, [small_train_root, str(small_train_root)], folder_train_fraction=1.0)

    assert merged.num_train_ids == 2 + 3 + 3 and {s.pid for s in merged.train} == set(range(8))
    assert len(merged.train) == len(main.train) + 2 * len(extra.train)
    assert (merged.query, merged.gallery, merged.name) == (main.query, main.gallery, "folder")
    # The merged list is main's train, then each extra root's, in order (the same root twice is two roots).
    size = len(extra.train)
    by_root = [merged.train[: len(main.train)], merged.train[len(main.train) : -size], merged.train[-size:]]
    assert [s.path for s in by_root[1]] == [s.path for s in by_root[2]] == [s.path for s in extra.train]
    for field in ("pid", "camid", "clothes_id"):
        values = [{getattr(s, field) for s in samples} for samples in by_root]
        assert not (values[0] & values[1] or values[0] & values[2] or values[1] & values[2]), field
    # Within a root the ids keep their structure: the extra root's pids are its own, shifted past the others.
    assert [s.pid for s in by_root[1]] == [s.pid + 2 for s in extra.train]
    assert [s.pid for s in by_root[2]] == [s.pid + 5 for s in extra.train]
    # Main cameras c1, c2, c3 (0..2, test included) come first; each extra root's two cameras follow.
    assert {s.camid for s in by_root[1]} == {3, 4} and {s.camid for s in by_root[2]} == {5, 6}


def test_training_roots_in_the_config_and_their_errors(tmp_path, tiny_image, small_train_root):
    config = TrainConfig.from_dict({"dataset": "folder", "extra_train_roots": [str(small_train_root)]})
    assert config.extra_train_roots == (str(small_train_root),)
    assert config.as_dict()["extra_train_roots"] == [str(small_train_root)]
    with pytest.raises(ReidError, match=r"extra_train_roots = 'data' has the wrong type"):
        TrainConfig.from_dict({"dataset": "folder", "extra_train_roots": "data"})
    with pytest.raises(ReidError, match=r"extra_train_roots = \('',\) is invalid"):
        TrainConfig.from_dict({"dataset": "folder", "extra_train_roots": [""]})

    main_root = split_tree(tmp_path / "crops", tiny_image)
    with pytest.raises(ReidError, match="folder data root not found: .*nowhere"):
        load_training_sets("folder", main_root, [tmp_path / "nowhere"])
    test_only = make_files(tmp_path / "test_only", ["test/zed/c1_red_0001.jpg"], tiny_image)
    (test_only / "train").mkdir()
    with pytest.raises(ReidError, match="extra training root .*test_only has no training identities"):
        load_training_sets("folder", main_root, [test_only])
