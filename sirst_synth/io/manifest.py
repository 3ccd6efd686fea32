"""manifest.jsonl: one record per sample of a generated dataset, written last (it marks the
dataset complete). One reader and one writer serve generate, verify, preview, train, evaluate."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath

from sirst_synth.errors import DataError

MANIFEST = "manifest.jsonl"
SPLITS = ("original", "development", "test")


@dataclass(frozen=True)
class ManifestRow:
    """A sample: its files (relative to the dataset folder), split, source and, for development
    samples, how it was made (noise patch, alpha, s, pass, target, centre, window, angle)."""

    image: str
    mask: str
    split: str
    source: str
    sha256: dict  # {"image": hex, "mask": hex}
    noise: dict | None = None  # {"source": stem, "row": grid row, "col": grid col}
    alpha: float | None = None
    s: int | None = None
    pass_index: int | None = None  # "pass" in JSON
    target: int | None = None
    center: list[int] | None = None  # [row, col]
    window: list[int] | None = None  # [row0, col0, row1, col1) half-open
    angle: int | None = None
    group: str | None = None  # the 4 rotations of one target share it (L_Neg)
    # mode paste: each pasted target [{source, target, at: [row, col], scale, flip, angle}]
    paste: list[dict] | None = None
    given_up: int | None = None  # paste: targets drawn but not placed (no room, or they split)

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out["pass" if f.name == "pass_index" else f.name] = value
        return out

    @classmethod
    def from_json(cls, data: dict) -> ManifestRow:
        try:
            values = {("pass_index" if k == "pass" else k): v for k, v in data.items()}
            row = cls(**values)
            if row.split not in SPLITS or not {"image", "mask"} <= set(row.sha256):
                raise ValueError
            for rel in (row.image, row.mask):
                check_relative(rel)
        except DataError:
            raise  # it says what is wrong (a DataError is a ValueError too)
        except (TypeError, ValueError, AttributeError):
            raise DataError("not a valid manifest row") from None
        return row

    @property
    def stem(self) -> str:
        return Path(self.image).stem


def manifest_line(row: ManifestRow | dict) -> str:
    """One line of the file: a sorted-key JSON object (stable across runs); ``row`` may be
    given as its ``to_json`` dict."""
    return json.dumps(row.to_json() if isinstance(row, ManifestRow) else row, sort_keys=True) + "\n"


def read_manifest(folder: Path, problems: list[str] | None = None) -> list[ManifestRow]:
    """The rows of ``folder``'s manifest. A bad line is a data error, or (with ``problems``)
    noted there and skipped, for `verify`."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataError(
            f"{folder}: no {MANIFEST}; is this a folder written by sirst-synth generate?"
        )
    rows = []
    seen: set[str] = set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = ManifestRow.from_json(json.loads(line))
            if row.image in seen or row.mask in seen:
                raise DataError("a path listed twice")
            seen.update((row.image, row.mask))
            rows.append(row)
        except (json.JSONDecodeError, DataError) as exc:
            why = str(exc) if isinstance(exc, DataError) else "not JSON"
            message = f"{MANIFEST} line {n}: not a valid manifest row ({why})"
            if problems is None:
                raise DataError(
                    f"{path}: line {n} is not a valid manifest row ({why}); regenerate"
                ) from None
            problems.append(message)
    return rows


def check_relative(rel: str) -> str:
    """A path read from a file (manifest, split file) must stay inside its folder: relative,
    no ``..``, no drive or root. Anything else is a data error."""
    p = PurePosixPath(str(rel).replace("\\", "/"))
    if not str(rel) or p.is_absolute() or ".." in p.parts or ":" in str(rel):
        raise DataError(f"path {rel!r} leaves its folder")
    return str(rel)
