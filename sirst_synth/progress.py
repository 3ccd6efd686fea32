"""A tiny progress interface: the library reports, the command line draws."""

from __future__ import annotations


class Progress:
    """No-op reporter; `cli` passes one that draws a rich progress bar."""

    def start(self, description: str, total: int) -> None:  # noqa: B027 - deliberate no-op
        pass

    def advance(self, n: int = 1) -> None:  # noqa: B027
        pass

    def stop(self) -> None:  # noqa: B027
        pass

    def lane(self, i: int) -> Progress:
        """The reporter of concurrent work ``i`` (its own line where the display has lines;
        lane 0 is this reporter)."""
        return self


class Labelled(Progress):
    """``inner`` with every description prefixed by ``label`` (which run a line belongs to)."""

    def __init__(self, inner: Progress, label: str) -> None:
        self.inner, self.label = inner, label

    def start(self, description: str, total: int) -> None:
        self.inner.start(f"{self.label}: {description}", total)

    def advance(self, n: int = 1) -> None:
        self.inner.advance(n)

    def stop(self) -> None:
        self.inner.stop()

    def lane(self, i: int) -> Progress:
        return self.inner.lane(i)
