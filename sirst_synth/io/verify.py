"""Check a generated dataset against its manifest: every file there, whole, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from sirst_synth.errors import DataError, SirstError
from sirst_synth.io.files import TMP_MARK, decode_raw, sha256_file
from sirst_synth.io.journal import DESCRIBED, JOURNAL, STATE_DIR
from sirst_synth.io.manifest import MANIFEST, check_relative, read_manifest


def verify_dataset(out: Path) -> tuple[int, list[str], list[str]]:
    """(rows checked, problems, warnings). Problems: missing, corrupt or mismatched files,
    strays, temporaries. Warnings: what is whole but will not load as the user expects (a
    renamed folder whose split files BasicIRSTD will not find)."""
    out = Path(out)
    problems: list[str] = []
    if not (out / MANIFEST).is_file() and (out / STATE_DIR / JOURNAL).is_file():
        raise DataError(
            f"{out}: a sirst-synth generate is writing it, or was stopped before it finished "
            "(no manifest yet); wait for it, or run generate again with --resume"
        )
    rows = read_manifest(out, problems)
    listed: set[str] = set()
    for row in rows:
        shapes = []
        for kind, rel in (("image", row.image), ("mask", row.mask)):
            listed.add(rel)
            path = out / rel
            if not path.is_file():
                problems.append(f"{rel}: listed in the manifest but missing")
                continue
            if sha256_file(path) != row.sha256[kind]:
                problems.append(
                    f"{rel}: sha256 differs from the manifest (file changed or corrupt)"
                )
            try:
                shapes.append(decode_raw(path).shape[:2])
            except SirstError:
                problems.append(f"{rel}: does not decode")
        if len(shapes) == 2 and shapes[0] != shapes[1]:
            problems.append(f"{row.image}: image {shapes[0]} and mask {shapes[1]} differ in size")
    problems += _paste_problems(rows)
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
    described = out / STATE_DIR / DESCRIBED
    if described.is_file():
        for rel, digest in json.loads(described.read_text()).items():
            path = out / check_relative(rel)
            if not path.is_file():
                problems.append(f"{rel}: describes the dataset but is missing")
            elif sha256_file(path) != digest:
                problems.append(f"{rel}: changed since generate wrote it (sha256 differs)")
    for p in sorted(out.glob(f"*{TMP_MARK}*")):
        problems.append(
            f"{p.name}: stray temporary file from an interrupted run (resume or delete it)"
        )
    return len(rows), problems, _rename_warnings(out)


def _rename_warnings(out: Path) -> list[str]:
    """BasicIRSTD finds img_idx/{train,test}_NAME.txt by the dataset folder's name."""
    run_file = out / STATE_DIR / "run.json"
    if not run_file.is_file():
        return []
    run = json.loads(run_file.read_text())
    old, new = run.get("name"), out.resolve().name
    if not old or old == new or run.get("layout") not in ("both", "basicirstd"):
        return []
    missing = [
        f"img_idx/{kind}_{new}.txt"
        for kind in ("train", "test")
        if (out / f"img_idx/{kind}_{old}.txt").is_file()
        and not (out / f"img_idx/{kind}_{new}.txt").is_file()
    ]
    if not missing:
        return []
    return [
        f"the folder was renamed from {old!r} to {new!r}: BasicIRSTD looks for "
        f"{' and '.join(missing)} (its test loader fails without it, its training loader "
        f"falls back to img_idx/train.txt); rename the folder back to {old!r}, or copy "
        f"img_idx/*_{old}.txt to those names"
    ]


PASTE_KEYS = {"source", "target", "at", "scale", "flip", "angle"}


def _paste_problems(rows: list) -> list[str]:
    """A paste sample's provenance names training images of this dataset and whole records."""
    originals = {r.source for r in rows if r.split == "original"}
    out = []
    for r in rows:
        for p in r.paste or []:
            if not isinstance(p, dict) or set(p) != PASTE_KEYS:
                out.append(f"{r.image}: a paste record is not {sorted(PASTE_KEYS)}")
            elif p["source"] not in originals:
                out.append(f"{r.image}: pasted from {p['source']!r}, not a training image here")
            elif p["angle"] not in (0, 90, 180, 270) or not (
                isinstance(p["at"], list) and len(p["at"]) == 2
            ):
                out.append(f"{r.image}: a paste record has a bad angle or position")
    return out
