"""Check a generated dataset against its manifest: every file there, whole, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from sirst_synth.errors import DataError, SirstError
from sirst_synth.io.files import TMP_MARK, decode_raw, sha256_file


def verify_dataset(out: Path) -> tuple[int, list[str]]:
    """(rows checked, problems): missing, corrupt or mismatched files, strays, temporaries."""
    out = Path(out)
    manifest = out / "manifest.jsonl"
    if not manifest.is_file():
        raise DataError(
            f"{out}: no manifest.jsonl; is this a folder written by sirst-synth generate?"
        )
    problems: list[str] = []
    listed: set[str] = set()
    rows = 0
    for n, line in enumerate(manifest.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            pair = [(k, row[k], row["sha256"][k]) for k in ("image", "mask")]
        except (json.JSONDecodeError, KeyError, TypeError):
            problems.append(f"manifest.jsonl line {n}: not a valid manifest row")
            continue
        rows += 1
        shapes = []
        for _kind, rel, digest in pair:
            listed.add(rel)
            path = out / rel
            if not path.is_file():
                problems.append(f"{rel}: listed in the manifest but missing")
                continue
            if sha256_file(path) != digest:
                problems.append(
                    f"{rel}: sha256 differs from the manifest (file changed or corrupt)"
                )
            try:
                shapes.append(decode_raw(path).shape[:2])
            except SirstError:
                problems.append(f"{rel}: does not decode")
        if len(shapes) == 2 and shapes[0] != shapes[1]:
            problems.append(f"{pair[0][1]}: image {shapes[0]} and mask {shapes[1]} differ in size")
    for sub in ("images", "masks"):
        folder = out / sub
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            rel = f"{sub}/{p.name}"
            if TMP_MARK in p.name:
                problems.append(
                    f"{rel}: stray temporary file from an interrupted run (resume or delete it)"
                )
            elif rel not in listed:
                problems.append(f"{rel}: file not in the manifest")
    for p in sorted(out.glob(f"*{TMP_MARK}*")):
        problems.append(
            f"{p.name}: stray temporary file from an interrupted run (resume or delete it)"
        )
    return rows, problems
