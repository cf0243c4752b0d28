"""The one exception type the package raises for bad input."""


class DnicError(ValueError):
    """A problem the user can fix; the message names the problem and the fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}\nFix: {fix}")
        self.problem = problem
        self.fix = fix
