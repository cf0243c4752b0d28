"""One run end to end on the shipped fixture data: record, tables and the architecture-specific discussion."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnic_utils import experiment, report
from dnic_utils.config import make_config


@pytest.fixture
def weighted_sum_run(project_dir: Path, fixture_data: Path) -> experiment.Experiment:
    """WeightedSumNet trained for one smoke epoch on the fixture MNIST."""
    return experiment.run(make_config("weightedsumnet", "mnist", profile="smoke"), data_dir=str(fixture_data))


def test_a_run_writes_its_record_under_the_project(weighted_sum_run: experiment.Experiment, project_dir: Path) -> None:
    assert weighted_sum_run.record_path == project_dir / "results" / "smoke" / "mnist-weightedsumnet.json"
    assert weighted_sum_run.record_path.is_file()
    assert weighted_sum_run.metrics["flip_tta"] is False


def test_learned_branch_weights_are_measured_on_validation_images(weighted_sum_run: experiment.Experiment) -> None:
    weights = weighted_sum_run.branch_weights()
    assert weights.attrs["images"] == min(512, len(weighted_sum_run.splits.val_y))
    means = weights["mean weight"].unstack()
    assert means.shape == (3, 3)  # three blocks of three branches
    assert means.sum(axis=1).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)  # softmax weights (bf16 on CPU) sum to 1
    text = report.discussion(weighted_sum_run)
    assert "learned branch weights" in text and f"{means.iloc[0, 0]:.2f}" in text


def test_nets_without_branch_weights_say_nothing_about_them(project_dir: Path, fixture_data: Path) -> None:
    run = experiment.run(make_config("lenet5", "mnist", profile="smoke"), data_dir=str(fixture_data))
    assert run.branch_weights() is None
    assert "branch weights" not in report.discussion(run)
