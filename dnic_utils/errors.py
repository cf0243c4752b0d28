"""The one exception type the package raises for bad input, and its brief display in notebooks."""

from __future__ import annotations


class DnicError(ValueError):
    """A problem the user can fix; the message names the problem and the fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}\nFix: {fix}")
        self.problem = problem
        self.fix = fix


class DivergedWarning(RuntimeWarning):
    """A training run whose loss stopped being a number: its results mean nothing, and the warning names the fix."""


def show_briefly() -> None:
    """In IPython/Jupyter, print a DnicError as its message alone, without the stack trace."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def handler(shell: object, etype: type, value: BaseException, tb: object, tb_offset: int | None = None) -> None:
        """Show the error's type and message alone."""
        shell.showtraceback((etype, value, tb), exception_only=True)  # still an error output, so papermill stops

    shell.set_custom_exc((DnicError,), handler)
