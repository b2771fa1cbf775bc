import pytest

from cctrack.config import DEFAULT_CONFIG_PATH, RunConfig, load_config
from cctrack.errors import CctrackError


def test_default_config_file_matches_built_in_defaults():
    assert load_config(DEFAULT_CONFIG_PATH) == RunConfig()


def test_overrides_reach_every_section_with_yaml_typing(tmp_path):
    config = load_config(None, ["detector.image_size=1280", "video.max_frames=50", "reid.half=true", "detector.weights=/x.pt"])
    assert config.detector.image_size == 1280
    assert config.video.max_frames == 50
    assert config.reid.half is True
    assert config.detector.weights == "/x.pt"


def test_float_fields_accept_integers_and_exponents():
    assert load_config(None, ["video.image_fps=30"]).video.image_fps == 30.0
    assert load_config(None, ["link.distance_threshold=1e-3"]).link.distance_threshold == 0.001


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("detector:\n  imgsz: 640\n", "unknown key detector.imgsz"),
        ("detectr:\n  image_size: 640\n", "unknown section 'detectr'"),
        ("detector:\n  image_size: big\n", "detector.image_size must be int"),
        ("detector:\n  image_size: 100\n", "multiple of 32"),
        ("video:\n  stride: 0\n", "video.stride must be >= 1"),
        ("video: [1, 2]\n", "must be a mapping"),
        ("detector: {image_size: 640\n", "not valid YAML"),
        ("tracker:\n  lost_track_seconds: -1\n", "lost_track_seconds"),
    ],
)
def test_bad_config_names_the_key(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(CctrackError, match=message):
        load_config(path)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(CctrackError, match="section.key=value"):
        load_config(None, ["image_size=3"])
    with pytest.raises(CctrackError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
