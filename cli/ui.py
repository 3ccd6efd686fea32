"""Rich output shared by every command: progress bars, summary tables, JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichBar
from rich.table import Table

from sirst_synth.progress import Progress

console = Console()
err_console = Console(stderr=True)


class RateColumn(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return f"{speed:6.1f}/s" if speed else "   -  /s"


class BarProgress(Progress):
    """The library's progress interface drawn as one rich bar per phase."""

    def __init__(self) -> None:
        self._bar: RichBar | None = None
        self._task = None

    def start(self, description: str, total: int) -> None:
        self.stop()
        self._bar = RichBar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def progress_for(quiet: bool, as_json: bool) -> Progress:
    return Progress() if quiet or as_json else BarProgress()


def table(title: str, rows: list[tuple[str, Any]]) -> Table:
    t = Table(title=escape(title), show_header=True, header_style="bold")
    t.add_column("what")
    t.add_column("value", justify="right")
    for k, v in rows:
        t.add_row(escape(str(k)), escape(str(v)))
    return t


def emit(title: str, rows: list[tuple[str, Any]], data: dict, quiet: bool, as_json: bool) -> None:
    """The end of every command: a JSON object, a table, or nothing under --quiet."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=1, default=str) + "\n")
    elif not quiet:
        console.print(table(title, rows))
