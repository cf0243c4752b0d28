"""Stops nbval runs of the notebooks that lack the test environment tests/conftest.py sets up.

Given notebooks alone (`pytest notebooks/101_mnist_lenet5.ipynb`), pytest does not load tests/conftest.py, so the
kernels would run in the profile each notebook was executed in and write into the project's results/ and figures/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS_CONFTEST = Path(__file__).resolve().parent.parent / "tests" / "conftest.py"


def pytest_configure(config: pytest.Config) -> None:
    """A clear error, with the command to use, when tests/conftest.py is not loaded."""
    loaded = {Path(path).resolve() for path in (getattr(p, "__file__", None) for p in config.pluginmanager.get_plugins()) if path}
    if TESTS_CONFTEST not in loaded:
        raise pytest.UsageError(
            "nbval would run these notebooks without the test environment (smoke profile, a scratch project), so their kernels "
            "would retrain in the notebooks' own profile and overwrite results/ and figures/. Fix: give pytest tests/conftest.py "
            "too, e.g. `python -m pytest tests/conftest.py notebooks/101_mnist_lenet5.ipynb`, or run the whole suite with `python -m pytest`.")
