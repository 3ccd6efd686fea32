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
