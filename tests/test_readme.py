"""The README's two setup commands are the project's contract: keep CI and the sample in step with them."""

import re

from tests.conftest import REPO_ROOT


def _commands() -> list[str]:
    return re.findall(r"^    (python3 -m venv .*)$", (REPO_ROOT / "README.md").read_text(), flags=re.M)


def test_readme_opens_with_the_two_setup_commands():
    run_sample, run_tests = _commands()[:2]
    assert "cctrack run samples/pets09" in run_sample
    assert (REPO_ROOT / "samples" / "pets09" / "cam_left.mp4").is_file()
    assert "pytest" in run_tests


def test_ci_runs_the_readme_test_command_verbatim():
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert _commands()[1] in ci_lines
