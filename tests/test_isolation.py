"""The tests' own environment: the smoke profile and a scratch project, whatever the shell that started pytest had set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT


def test_the_tests_run_in_smoke_and_in_a_scratch_project() -> None:
    assert os.environ["DNIC_PROFILE"] == "smoke"
    assert Path(os.environ["DNIC_PROJECT_DIR"]).name.startswith("dnic-test-project-")


def test_a_profile_and_project_left_in_the_shell_do_not_reach_the_tests(tmp_path: Path) -> None:
    env = {**os.environ, "DNIC_PROFILE": "budget", "DNIC_PROJECT_DIR": str(tmp_path)}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    inner = f"{Path(__file__).relative_to(REPO_ROOT)}::test_the_tests_run_in_smoke_and_in_a_scratch_project"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", inner],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 passed" in result.stdout and list(tmp_path.iterdir()) == []
