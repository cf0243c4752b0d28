"""The studies' notebook parameters (45, 50, 60) are checked where they are used: a bad value is a DnicError naming it and the fix."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dnic_utils import compare, corruptions, deployment, hparams
from dnic_utils.errors import DnicError

EMPTY = compare.Selection("mnist", None)
CASES: list[tuple[str, Callable[[object], object], list[object]]] = [
    ("alpha", lambda v: compare.significance(EMPTY, v), [0, 1, 2, "0.05"]),  # notebook 50
    ("alpha", lambda v: hparams.test_text(None, {}, v), [0, 1.5]),  # notebook 45: checked before the search's results are read
    ("bootstrap_resamples", lambda v: compare.summary(EMPTY, v), [0, -5, 2.5]),
    ("corruption_images", lambda v: corruptions.study({}, "smoke", "cifar10", v), [0, -100, 1.5]),
    ("max_size_mb", lambda v: deployment.prepare("cifar10", "smoke", v, None), [0, -1, "10"]),
    ("repeats", lambda v: deployment.Deployment.latency(None, (1,), v), [0, -1, 2.0]),  # checked before the deployment is touched
]


@pytest.mark.parametrize(("name", "call", "value"), [(name, call, value) for name, call, values in CASES for value in values])
def test_a_bad_study_parameter_names_itself_and_a_good_value(name: str, call: Callable[[object], object], value: object) -> None:
    with pytest.raises(DnicError) as err:
        call(value)
    assert f"`{name}`" in str(err.value) and repr(value) in str(err.value) and f"set `{name}`" in str(err.value)


def test_good_values_pass_the_checks() -> None:
    assert compare.significance(EMPTY, 0.05).empty
    assert corruptions.study({}, "smoke", "cifar10", None)[0].empty  # no checkpoint named: nothing to load, the study is skipped
