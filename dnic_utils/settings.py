"""Settings read from the environment: where the project, the cache and the data live, and whether to stay quiet."""

from __future__ import annotations

import os
from pathlib import Path


def checkout() -> Path:
    """The folder above this package: the source checkout when it holds pyproject.toml (not so for an installed package)."""
    return Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The folder that holds results/, figures/ and notebooks/: DNIC_PROJECT_DIR, else this checkout, else the cwd.

    The cwd fallback is for an installed (non-editable) package, as on Colab, where the notebook's folder is used.
    """
    env = os.environ.get("DNIC_PROJECT_DIR")
    return Path(env) if env else checkout() if (checkout() / "pyproject.toml").is_file() else Path.cwd()


def result_roots() -> list[Path]:
    """Where records and exported models are read: the project's results/, then this checkout's if that is another folder (its committed ones)."""
    roots = [project_root() / "results"]
    if (checkout() / "pyproject.toml").is_file() and (checkout() / "results").resolve() != roots[0].resolve():
        roots.append(checkout() / "results")
    return roots


def cache_dir() -> Path:
    """Where decoded datasets and torchvision's downloads are cached (DNIC_CACHE_DIR, else ~/.cache/dnic)."""
    env = os.environ.get("DNIC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "dnic"


def checkpoint_dir(profile: str, run_name: str) -> Path:
    """Where one run's checkpoints live: checkpoints/<profile>/<run name>/ in the project (git-ignored)."""
    return project_root() / "checkpoints" / profile / run_name


def data_dir(root: str | os.PathLike | None = None) -> Path | None:
    """The offline data root: the argument, else DNIC_DATA_DIR, else None (torchvision downloads)."""
    value = root or os.environ.get("DNIC_DATA_DIR")
    return Path(value).expanduser() if value else None


def share_cores(jobs: int) -> None:
    """For one of `jobs` processes sharing the machine: cores/jobs threads for it and its kernels, unless OMP_NUM_THREADS is set."""
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))


def quiet() -> bool:
    """True under CI or the runner, where progress bars would only add noise."""
    return any(os.environ.get(k, "").lower() not in ("", "0", "false") for k in ("CI", "DNIC_QUIET"))
