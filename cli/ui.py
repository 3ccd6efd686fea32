"""Rich output shared by every command: progress bars, summary tables, JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichBar
from rich.table import Table

from sirst_synth.io.files import write_text_atomic
from sirst_synth.progress import Progress

console = Console()
err_console = Console(stderr=True)


class RateColumn(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task: Task) -> str:  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return f"{speed:6.1f}/s" if speed else "   -  /s"


def new_bar() -> RichBar:
    """A started rich progress display with the project's columns (count, rate, ETA)."""
    bar = RichBar(
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
    bar.start()
    return bar


class BarProgress(Progress):
    """The library's progress interface drawn as one rich bar per phase."""

    def __init__(self) -> None:
        self._bar: RichBar | None = None
        self._task = None

    def start(self, description: str, total: int) -> None:
        self.stop()
        self._bar = new_bar()
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


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite number is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def emit(
    title: str,
    rows: list[tuple[str, Any]],
    data: dict,
    quiet: bool,
    as_json: bool,
    json_out: Path | None = None,
) -> None:
    """The end of every command: a JSON object, a table, or nothing under --quiet; and the
    same JSON in ``--json-out`` where given."""
    text = json.dumps(_finite(data), indent=1, default=str, allow_nan=False) + "\n"
    if json_out is not None:
        write_text_atomic(json_out, text)
    if as_json:
        sys.stdout.write(text)
    elif not quiet:
        console.print(table(title, rows))


def emit_summary(
    title: str,
    summary: Any,
    labels: dict[str, str],
    quiet: bool,
    as_json: bool,
    json_out: Path | None = None,
    extra_rows: list[tuple[str, Any]] = (),
) -> None:
    """Table and JSON from one summary dataclass, so they cannot drift apart: the JSON holds
    every field; the table shows the labelled ones (then ``extra_rows``)."""
    data = {
        f.name: getattr(summary, f.name)
        for f in dataclasses.fields(summary)
        if f.repr  # fields kept out of repr (weights, histories) stay out of the JSON too
    }
    rows = [(label, _cell(getattr(summary, name))) for name, label in labels.items()]
    emit(title, rows + list(extra_rows), data, quiet, as_json, json_out)


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple | dict):
        return len(value)
    return value


class _Task(Progress):
    """One task of a shared rich bar (the study's overall and per-run lines)."""

    def __init__(self, owner: StackedBars, keep: bool) -> None:
        self.owner, self.keep, self.task = owner, keep, None
        self.lanes: dict[int, _Task] = {0: self}

    def start(self, description: str, total: int) -> None:
        bar = self.owner.bar()
        if self.task is not None and not self.keep:
            bar.remove_task(self.task)
        self.task = bar.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.owner.bar().advance(self.task, n)

    def stop(self) -> None:
        if self.keep:
            self.owner.close()

    def lane(self, i: int) -> Progress:
        """Concurrent work ``i`` gets a line of its own under this one."""
        if i not in self.lanes:
            self.lanes[i] = _Task(self.owner, self.keep)
        return self.lanes[i]


class StackedBars:
    """Lines in one rich display: an overall bar (runs done / total, ETA) above the bar of the
    current phase, which is replaced when the next phase starts (one such line per run under
    ``study --jobs``)."""

    def __init__(self) -> None:
        self._bar: RichBar | None = None
        self.overall = _Task(self, keep=True)
        self.current = _Task(self, keep=False)

    def bar(self) -> RichBar:
        if self._bar is None:
            self._bar = new_bar()
        return self._bar

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
