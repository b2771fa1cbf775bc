"""`reid` CLI end to end with typer's CliRunner: train, eval, export, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from typer.testing import CliRunner

from tests.reid.test_evaluate_protocols import one_outfit_root
from reid.cli import app

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
runner = CliRunner()


def test_train_eval_export(trained_weights, cloth_changing_root, tmp_path):
    json_path = tmp_path / "metrics" / "eval.json"
    result = runner.invoke(app, [
        "eval", "--checkpoint", str(trained_weights), "--dataset", "folder", "--data-root", str(cloth_changing_root),
        "--json", str(json_path), "--device", "cpu", "--num-workers", "0", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    table = result.stdout.splitlines()
    assert table[0].split() == ["protocol", "rank1", "rank5", "rank10", "mAP", "mINP", "queries"]
    assert table[2].split()[0] == "standard" and table[3].split()[0] == "cloth-changing"
    saved = json.loads(json_path.read_text())
    assert set(saved["protocols"]) == {"standard", "cloth_changing"}
    cloth_changing = saved["protocols"]["cloth_changing"]
    assert cloth_changing["num_valid_queries"] == 24 and 0 <= cloth_changing["rank1"] <= cloth_changing["rank5"] <= 1
    assert float(table[3].split()[1]) == pytest.approx(100 * cloth_changing["rank1"], abs=0.05)

    onnx_path = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", "--checkpoint", str(trained_weights), "--onnx", str(onnx_path)])
    assert result.exit_code == 0, result.output
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (features,) = session.run(None, {session.get_inputs()[0].name: np.zeros((3, 3, 128, 64), np.float32)})
    assert features.shape == (3, 1280)


def test_eval_one_outfit_folder_skips_cloth_changing_and_says_why(trained_weights, tmp_path, tiny_image):
    root = one_outfit_root(tmp_path / "crops", tiny_image)
    json_path = tmp_path / "eval.json"
    arguments = ["eval", "--checkpoint", str(trained_weights), "--dataset", "folder", "--data-root", str(root),
                 "--folder-train-fraction", "0", "--device", "cpu", "--num-workers", "0", "--quiet",
                 "--json", str(json_path)]
    reason = "every test identity wears one outfit, so no query has a gallery image of itself in other clothes"
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    table = result.stdout.splitlines()
    assert table[2].split()[0] == "standard" and table[2].split()[-1] == "8"
    assert table[3] == f"{'cloth-changing':<16}skipped: {reason}"
    saved = json.loads(json_path.read_text())
    assert set(saved["protocols"]) == {"standard"} and saved["skipped"] == {"cloth_changing": reason}
    assert saved["folder_protocol"] == {"name": "first-per-camera", "query_camera": None}

    result = runner.invoke(app, [*arguments, "--folder-protocol", "cross-camera", "--folder-query-camera", "c2"])
    assert result.exit_code == 0, result.output
    saved = json.loads(json_path.read_text())
    assert saved["folder_protocol"] == {"name": "cross-camera", "query_camera": "c2"}
    assert saved["protocols"]["standard"]["num_queries"] == 4 * 2  # every c2 image is a query


def test_eval_with_nothing_to_score_fails_at_once(tmp_path, tiny_image):
    # One camera, one outfit: no valid query in any protocol. Said before the (missing) checkpoint is read.
    root = one_outfit_root(tmp_path / "crops", tiny_image, cameras=("c1",))
    result = runner.invoke(app, ["eval", "--checkpoint", str(tmp_path / "missing.pt"), "--dataset", "folder",
                                 "--data-root", str(root), "--folder-train-fraction", "0"])
    assert_one_line_error(result, "folder: no protocol has a valid query (standard: no query has a gallery image of "
                                  "itself from another camera; cloth-changing: every test identity wears one outfit")


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_layout_is_one_line(cloth_changing_root, tmp_path):
    checkpoint = tmp_path / "unused.pt"
    result = runner.invoke(app, ["eval", "--checkpoint", str(checkpoint), "--dataset", "ltcc",
                                 "--data-root", str(cloth_changing_root)])
    assert_one_line_error(result, "LTCC layout: missing folder", "expected train/PID_OUTFIT_cCAM_*.png")


def test_missing_and_truncated_checkpoints_are_one_line(trained_weights, cloth_changing_root, tmp_path):
    arguments = ["--dataset", "folder", "--data-root", str(cloth_changing_root), "--device", "cpu"]
    result = runner.invoke(app, ["eval", "--checkpoint", str(tmp_path / "missing.pt"), *arguments])
    assert_one_line_error(result, "checkpoint not found", "missing.pt")

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(trained_weights.read_bytes()[:5000])
    result = runner.invoke(app, ["eval", "--checkpoint", str(truncated), *arguments])
    assert_one_line_error(result, "truncated.pt is corrupt or truncated")
    result = runner.invoke(app, ["export", "--checkpoint", str(truncated), "--onnx", str(tmp_path / "x.onnx")])
    assert_one_line_error(result, "truncated.pt is corrupt or truncated")
    assert not (tmp_path / "x.onnx").exists()


def test_train_config_errors_are_one_line(small_train_root, tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("dataset: folder\nepoch: 3\n")
    result = runner.invoke(app, ["train", "--config", str(config), "--data-root", str(small_train_root)])
    assert_one_line_error(result, "unknown key(s) epoch")
    result = runner.invoke(app, ["train", "--config", str(CONFIGS / "cssc_tiny.yaml"), "--data-root",
                                 str(small_train_root), "--ids-per-batch", "1"])
    assert_one_line_error(result, "ids_per_batch = 1 is invalid")
    result = runner.invoke(app, ["train", "--config", str(CONFIGS / "cssc_tiny.yaml"), "--data-root",
                                 str(tmp_path / "nowhere"), "--device", "cpu"])
    assert_one_line_error(result, "folder data root not found")
