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
        ("detector:\n  image_size: big\n", "detector.image_size must be auto or a positive multiple of 32, got .big."),
        ("detector:\n  image_size: [640]\n", "detector.image_size must be int or str"),
        ("detector:\n  image_size: 100\n", "multiple of 32"),
        ("video:\n  stride: 0\n", "video.stride must be >= 1"),
        ("video: [1, 2]\n", "must be a mapping"),
        ("detector: {image_size: 640\n", "not valid YAML"),
        ("tracker:\n  lost_track_seconds: -1\n", "lost_track_seconds"),
        # Types are checked here once for every section, the tracker's too (TrackerSettings checks ranges).
        ("tracker:\n  min_hits: 2.5\n", "config: tracker.min_hits must be int, got 2.5"),
        ("tracker:\n  min_hits: true\n", "config: tracker.min_hits must be int, got True"),
        ("tracker:\n  fuse_score: maybe\n", "config: tracker.fuse_score must be bool, got 'maybe'"),
        ("tracker:\n  lost_track_seconds: .inf\n", "tracker.lost_track_seconds must be a finite number >= 0, got inf"),
        ("device: [cpu]\n", "config: device must be str"),
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


ONE_DEVICE = "the device is one top-level setting for every stage: write `device: cpu` at the top of the config, or pass --device"


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("detector:\n  device: cpu\n", f"config: detector.device was removed: {ONE_DEVICE}"),
        ("reid:\n  device: cpu\n", f"config: reid.device was removed: {ONE_DEVICE}"),
        ("link:\n  device: cpu\n", f"config: link.device was removed: {ONE_DEVICE}"),
        ("export:\n  crops: false\n", ("config: export.crops was removed: crops are always written: linking, "
                                        "`cctrack link`, `cctrack adapt` and `cctrack export-dataset` read them")),
    ],
)
def test_removed_keys_say_what_to_write_instead(tmp_path, yaml_text, message):
    path = tmp_path / "old.yaml"
    path.write_text(yaml_text)
    with pytest.raises(CctrackError) as raised:
        load_config(path)
    assert str(raised.value) == message


def test_device_is_one_top_level_setting(tmp_path):
    assert RunConfig().device == "auto"
    path = tmp_path / "gpu1.yaml"
    path.write_text("device: cuda:1\n")
    assert load_config(path).device == "cuda:1"
    assert load_config(path, ["device=cpu"]).device == "cpu"


def test_flags_are_applied_as_typed_values_after_set():
    """The CLI's own options arrive typed: no second trip through text and YAML ("null" stays a name)."""
    config = load_config(None, ["video.stride=2", "device=cuda"],
                         {"video.stride": 3, "detector.weights": "null", "device": "cpu", "video.max_frames": None})
    assert config.video.stride == 3
    assert config.detector.weights == "null"
    assert config.device == "cpu"
    assert config.video.max_frames is None  # None: the flag was not given
