"""Detector runtimes: exports of the bundled weights to ONNX and OpenVINO, made offline, cached, re-made when
corrupt, and finding the same people as torch on real sample frames."""

import json
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from cctrack import detector_runtime
from cctrack.config import load_config
from cctrack.detect import DetectorSettings, PersonDetector, bundled_weights_path
from cctrack.detector_runtime import (CPU_BATCH_SIZE, CPU_RUNTIME, EXPORTS_FOLDER_NAME, MANIFEST_NAME, network_input_shape,
                                      resolve_runtime)
from cctrack.errors import CctrackError
from cctrack.track.tracker import iou_matrix
from tests.conftest import read_sample_frames

IMAGE_SIZE = 800  # exports take seconds at any size; at 800 the nano model finds most people in these frames
CONFIDENT = 0.5  # the tracker's first-stage threshold


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The bundled weights copied into a writable folder of the test's own, so exports are cached beside them."""
    folder = tmp_path_factory.mktemp("weights")
    return shutil.copy(bundled_weights_path(), folder / "yolo11n-pose.pt")


@pytest.fixture(scope="module")
def frames():
    """Real frames with people: two of the busiest moments of each camera (4 and 6 annotated people)."""
    return [frame for camera, numbers in (("cam_left", (664, 725)), ("cam_right", (133, 145))) for number in numbers
            for frame in read_sample_frames(camera, 1, start=number - 1)]


@pytest.fixture(scope="module")
def torch_detections(weights, frames):
    return PersonDetector(DetectorSettings(weights=str(weights), image_size=IMAGE_SIZE, runtime="torch"), "cpu").detect(frames)


@pytest.fixture
def offline(monkeypatch):
    """No network and no pip: any attempt fails the test."""
    def refuse_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    real_popen = subprocess.Popen

    def refuse_pip(command, *args, **kwargs):
        assert "pip" not in " ".join(map(str, command if isinstance(command, (list, tuple)) else [command])), command
        return real_popen(command, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", refuse_network)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_network)
    monkeypatch.setattr(subprocess, "Popen", refuse_pip)


@pytest.fixture
def export_calls(monkeypatch):
    """How many exports ran (a spy: the real export still runs)."""
    calls = []
    real_export = detector_runtime._export

    def spy(*args):
        calls.append(args[1])
        return real_export(*args)

    monkeypatch.setattr(detector_runtime, "_export", spy)
    return calls


def _detector(weights, runtime, half=None):
    return PersonDetector(DetectorSettings(weights=str(weights), image_size=IMAGE_SIZE, runtime=runtime, half=half), "cpu")


def _assert_same_people(expected, found):
    """Every confident box of either side has a box on the other side with IoU > 0.9."""
    people = 0
    for ours, theirs in ((expected, found), (found, expected)):
        for one, other in zip(ours, theirs):
            confident = one.boxes[one.scores >= CONFIDENT]
            people += len(confident)
            if len(confident):
                assert len(other.boxes) and (iou_matrix(confident, other.boxes).max(axis=1) > 0.9).all()
    assert people >= 16  # the frames do show people (10 confident boxes each side)


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_export_is_made_offline_cached_and_finds_the_people_torch_finds(runtime, weights, frames, torch_detections,
                                                                         offline, export_calls):
    first = _detector(weights, runtime).detect(frames)
    _assert_same_people(torch_detections, first)
    # Full precision (OpenVINO is kept at f32): the same boxes as torch but for float rounding.
    for ours, reference in zip(first, torch_detections):
        assert np.allclose(ours.boxes, reference.boxes, atol=0.01) and np.allclose(ours.scores, reference.scores, atol=1e-4)
    folders = list((weights.parent / EXPORTS_FOLDER_NAME).glob(f"*-{runtime}"))
    assert len(folders) == 1 and len(export_calls) == 1  # both cameras are 320x576: one input shape
    assert not list((weights.parent / EXPORTS_FOLDER_NAME).glob(".*"))  # no staging folder left

    again = _detector(weights, runtime).detect(frames)
    assert len(export_calls) == 1  # loaded from the cache, not exported again
    assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(first, again))


def test_openvino_in_reduced_precision_finds_the_same_people(weights, frames, torch_detections):
    """`half` lets OpenVINO run bf16 where the CPU has it: boxes move by a fraction of a pixel, people stay."""
    _assert_same_people(torch_detections, _detector(weights, "openvino", half=True).detect(frames))


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_a_corrupt_cached_export_is_made_again(runtime, weights, frames, torch_detections, export_calls):
    _detector(weights, runtime).detect(frames[:1])  # cached (possibly by the test above)
    (folder,) = (weights.parent / EXPORTS_FOLDER_NAME).glob(f"*-{runtime}")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    largest = max(manifest["files"], key=lambda name: (folder / name).stat().st_size)
    data = (folder / largest).read_bytes()
    (folder / largest).write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or a killed copy
    export_calls.clear()

    detections = _detector(weights, runtime).detect(frames)
    assert len(export_calls) == 1
    assert (folder / largest).read_bytes() != data[: len(data) // 2]
    _assert_same_people(torch_detections, detections)


def test_exports_go_to_the_user_cache_when_the_weights_folder_cannot_hold_them(tmp_path, monkeypatch, frames):
    weights = shutil.copy(bundled_weights_path(), tmp_path / "yolo11n-pose.pt")
    (tmp_path / EXPORTS_FOLDER_NAME).write_text("a file where the exports folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _detector(weights, "onnx").detect(frames[:1])
    assert len(list((tmp_path / "cache" / "cctrack" / "detector").glob("*-onnx/model.onnx"))) == 1


def test_a_failed_export_is_one_clear_line_and_leaves_nothing(tmp_path, monkeypatch, frames):
    from ultralytics import YOLO

    def fail(self, **kwargs):
        raise RuntimeError("converter crashed\nlong traceback text")

    weights = shutil.copy(bundled_weights_path(), tmp_path / "yolo11n-pose.pt")
    monkeypatch.setattr(YOLO, "export", fail)
    with pytest.raises(CctrackError, match=r"^cannot export detector yolo11n-pose.pt to onnx \(800x448, batch 1\): converter crashed$"):
        _detector(weights, "onnx").detect(frames[:1])
    assert list((tmp_path / EXPORTS_FOLDER_NAME).iterdir()) == []


def test_a_runtime_that_is_not_installed_is_named_with_its_install_command(monkeypatch):
    real_find_spec = detector_runtime.importlib.util.find_spec
    monkeypatch.setattr(detector_runtime.importlib.util, "find_spec",
                        lambda name, *args: None if name == "openvino" else real_find_spec(name, *args))
    with pytest.raises(CctrackError, match=r"^detector.runtime=openvino needs openvino: pip install openvino$"):
        resolve_runtime("openvino", torch.device("cpu"))


def test_auto_is_the_measured_cpu_runtime_and_torch_on_a_gpu():
    assert resolve_runtime("auto", torch.device("cpu")) == CPU_RUNTIME
    assert resolve_runtime("auto", torch.device("cuda", 0)) == "torch"
    with pytest.raises(CctrackError, match="detector.runtime=onnx runs on the CPU; on cuda:0 use detector.runtime=torch"):
        resolve_runtime("onnx", torch.device("cuda", 0))


def test_the_detector_holds_its_resolved_runtime_and_batch_size():
    detector = PersonDetector(DetectorSettings(), "cpu")
    assert (detector.runtime, detector.settings.runtime, detector.settings.batch_size) == (CPU_RUNTIME, CPU_RUNTIME, CPU_BATCH_SIZE)
    assert PersonDetector(DetectorSettings(batch_size=3, runtime="torch"), "cpu").settings.batch_size == 3


def test_an_unknown_runtime_is_a_config_error_naming_the_choices():
    with pytest.raises(CctrackError, match=r"detector.runtime must be one of auto, torch, onnx, openvino, got 'tensorrt'"):
        load_config(None, ["detector.runtime=tensorrt"])
    assert load_config(None, ["detector.runtime=onnx"]).detector.runtime == "onnx"


@pytest.mark.parametrize("height, width", [(576, 320), (576, 768), (480, 640), (1080, 1920), (100, 900), (333, 333)])
def test_the_export_input_shape_is_the_shape_ultralytics_letterboxes_a_batch_to(height, width):
    """Reference: ultralytics' own LetterBox in the predictor's "rect" mode (one frame size per batch)."""
    from ultralytics.data.augment import LetterBox

    letterboxed = LetterBox(960, auto=True, stride=32)(image=np.zeros((height, width, 3), np.uint8))
    assert network_input_shape({(height, width)}, 960, 32) == letterboxed.shape[:2]
    mixed = {(height, width), (480, 640)}
    assert network_input_shape(mixed, 960, 32) == (letterboxed.shape[:2] if len(mixed) == 1 else (960, 960))


def test_openvino_sends_no_telemetry_once_cctrack_is_imported():
    """openvino reports usage to Google Analytics unless opted out; after cctrack's import it runs its no-op stub."""
    code = "import cctrack.detect, openvino.tools.ovc.telemetry_utils as t; print(t.tm.__name__)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "openvino.tools.ovc.telemetry_stub"
