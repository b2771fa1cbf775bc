import pytest

from reid.files import atomic_path


def test_atomic_path_replaces_on_success_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "model.pt"
    with atomic_path(target) as temporary:
        assert temporary.suffix == ".pt" and temporary.parent == target.parent
        temporary.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.pt"]
