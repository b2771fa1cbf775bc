"""bench.recipes' accounting of training minutes when a model averages several runs."""

from pathlib import Path

from bench.recipes import shared_wall_minutes

HEADER = "epoch,loss,identity_loss,triplet_loss,accuracy,lr,seconds"


def write_log(run: Path, rows: list[str]) -> Path:
    run.mkdir()
    (run / "train_log.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return run


def test_a_branch_counts_the_epochs_it_shares_with_its_trunk_once(tmp_path):
    trunk = ["1,46.9,32.3,14.6,0.04,3.5e-05,120", "2,34.3,28.4,5.9,0.07,0.0002,180"]
    run = write_log(tmp_path / "run", [*trunk, "3,22.6,19.5,3.1,0.22,0.00035,240"])
    branch = write_log(tmp_path / "branch", [*trunk, "3,23.0,19.9,3.1,0.21,0.00035,300"])

    assert shared_wall_minutes([run, branch]) == (120 + 180 + 240 + 300) / 60
    assert shared_wall_minutes([run, run]) == (120 + 180 + 240) / 60  # two checkpoints of one run


def test_an_epoch_trained_again_counts_again_even_with_the_same_losses(tmp_path):
    # Same seed and recipe up to there: the losses repeat, but the epoch was computed twice.
    first = write_log(tmp_path / "first", ["1,46.9,32.3,14.6,0.04,3.5e-05,120"])
    again = write_log(tmp_path / "again", ["1,46.9,32.3,14.6,0.04,3.5e-05,125"])

    assert shared_wall_minutes([first, again]) == (120 + 125) / 60
