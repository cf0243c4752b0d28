"""Shared fixtures of the unit tests.

The environment below is set at import, before any test or notebook kernel starts, so that nbval kernels started by
this pytest process inherit the smoke profile, quiet progress bars and a scratch project, whatever the shell had set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dnic_utils.settings import share_cores

if TYPE_CHECKING:
    from dnic_utils import compare

os.environ["DNIC_PROFILE"] = "smoke"  # forced: a DNIC_PROFILE=budget left in the shell must not make the tests train in budget
os.environ.setdefault("DNIC_QUIET", "1")
# Under pytest-xdist (`-n 2` in pyproject.toml) the workers share the cores: each worker, and the notebook kernels it
# starts, gets its share of threads instead of every one spinning a thread per core (settings imports no torch, so this
# comes before any test module imports it).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    share_cores(int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
FIXTURE_ROOT = TESTS_DIR / "fixtures" / "data"

# A relative DNIC_DATA_DIR (e.g. ../shared/data) means "relative to where pytest was started"; notebook
# kernels run in notebooks/, so hand them the absolute path.
if os.environ.get("DNIC_DATA_DIR") and not Path(os.environ["DNIC_DATA_DIR"]).is_absolute():
    os.environ["DNIC_DATA_DIR"] = str(Path(os.environ["DNIC_DATA_DIR"]).expanduser().resolve())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the nbval cells without DNIC_DATA_DIR: their stored outputs were made from the offline copy of the data."""
    if real_data_root() is not None:
        return
    skip = pytest.mark.skip(reason="nbval compares outputs made from the real datasets: set DNIC_DATA_DIR")
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    # Records, figures and checkpoints of the tests and of the nbval kernels go to a scratch project, never into
    # the repository's results/ and figures/ (which hold the committed runs the notebooks were executed with).
    # Forced, like the profile: a DNIC_PROJECT_DIR left in the shell must not receive the tests' records. The xdist workers
    # inherit the controller's scratch project.
    if "PYTEST_XDIST_WORKER" not in os.environ:
        config._dnic_scratch = tempfile.mkdtemp(prefix="dnic-test-project-")
        os.environ["DNIC_PROJECT_DIR"] = config._dnic_scratch
    config.addinivalue_line("markers", "report: runs the whole report (every notebook) in the smoke profile; slow")


def pytest_unconfigure(config: pytest.Config) -> None:
    scratch = getattr(config, "_dnic_scratch", None)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
        del os.environ["DNIC_PROJECT_DIR"]


def real_data_root() -> Path | None:
    """The offline copy of the real datasets named by DNIC_DATA_DIR, if set and present."""
    value = os.environ.get("DNIC_DATA_DIR")
    if value and Path(value).expanduser().is_dir():
        return Path(value).expanduser().resolve()
    return None


requires_real_data = pytest.mark.skipif(
    real_data_root() is None, reason="DNIC_DATA_DIR is not set (or does not exist): the checks against the real datasets need it"
)


@pytest.fixture(scope="session")
def fixture_root() -> Path:
    """The tiny data root shipped with the tests (tests/fixtures/data); never modify it."""
    assert (FIXTURE_ROOT / "MNIST" / "raw").is_dir(), "run python tests/fixtures/make_fixtures.py"
    return FIXTURE_ROOT


@pytest.fixture(scope="session")
def data_root(fixture_root: Path) -> Path:
    """DNIC_DATA_DIR when it is set and exists, else the shipped fixture root."""
    return real_data_root() or fixture_root


@pytest.fixture(scope="session")
def uses_fixture_data(data_root: Path, fixture_root: Path) -> bool:
    """True when data_root is the shipped fixture root rather than a real copy of the datasets."""
    return data_root == fixture_root


@pytest.fixture(scope="session")
def fixture_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory for decoded fixture data, shared by the session (cache files are keyed by content)."""
    return tmp_path_factory.mktemp("dnic-cache")


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uses_fixture_data: bool, fixture_cache: Path) -> Path:
    """A temporary project directory (DNIC_PROJECT_DIR) for the records, figures and checkpoints a test writes.

    With fixture data, decoded datasets are cached in a temporary directory too (DNIC_CACHE_DIR), so the
    user's cache never holds fixture data.
    """
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("DNIC_PROJECT_DIR", str(project))
    if uses_fixture_data:
        monkeypatch.setenv("DNIC_CACHE_DIR", str(fixture_cache))
    return project


@pytest.fixture
def fixture_data(fixture_root: Path, fixture_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped fixture root, with DNIC_CACHE_DIR pointed at the session's temporary cache."""
    monkeypatch.setenv("DNIC_CACHE_DIR", str(fixture_cache))
    return fixture_root


@pytest.fixture
def trio() -> compare.Selection:
    """LeNet-5 right on 190 images, VGG16 on 120 (a large gap), ResNet18 on 189 (one image from LeNet-5)."""
    from compare_records import correct_first, record  # imported here: the other tests need neither torch nor the records
    from dnic_utils import compare

    return compare.select([record("lenet5", correct=correct_first(190)), record("vgg16", correct=correct_first(120)),
                           record("resnet18", correct=correct_first(189))], "cifar10", "quick")
