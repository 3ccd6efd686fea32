"""generate's journal: one line per finished job, in job order, written after the job's files
are in place. It makes --resume exact (a resume skips as many jobs as it holds), and at the end
it is streamed into the manifest and split files (so they may be larger than memory)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sirst_synth.card import dataset_card
from sirst_synth.errors import DataError
from sirst_synth.io.files import atomic_file, sha256_bytes, write_text_atomic
from sirst_synth.io.layouts import Dataset, layout_split_paths
from sirst_synth.io.manifest import MANIFEST, SPLITS, manifest_line
from sirst_synth.recipe import SynthRecipe, to_yaml

if TYPE_CHECKING:
    from sirst_synth.generate import GenerateSummary

STATE_DIR = ".sirst-synth"
JOURNAL = "journal.jsonl"
DESCRIBED = "described.json"  # sha256 of split files, recipe.yaml and README.md


def trim_journal(journal: Path, out: Path | None = None) -> int:
    """Count the journal's complete lines, cutting it after the last one (a kill may have cut
    the line it was writing: that job and everything after it are redone). With ``out``, a
    job whose files are no longer all there (deleted since) ends the count too: a resume
    reuses only what it finds, and redoes the rest to the same bytes. Streamed: the journal
    grows with the run."""
    if not journal.is_file():
        journal.write_bytes(b"")
        return 0
    done = end = 0
    with open(journal, "rb") as fh:
        for line in fh:
            try:
                rows = json.loads(line)["rows"]
                files = [r[k] for r in rows for k in ("image", "mask")]
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
                break
            if not line.endswith(b"\n"):
                break
            if out is not None and not all((out / f).is_file() for f in files):
                break
            done, end = done + 1, end + len(line)
    os.truncate(journal, end)
    return done


def journal_rows(journal: Path, split: str) -> Iterator[dict]:
    """The journal's rows of one split, in job order (streamed), as ``ManifestRow.to_json``
    wrote them in the workers."""
    with open(journal, "rb") as fh:
        for line in fh:
            for r in json.loads(line)["rows"]:
                if r["split"] == split:
                    yield r


def count_rows(
    journal: Path, jobs: Iterable[tuple[str, str]]
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Rows per split, and the (stem, why) of every job ``--on-error skip`` left out,
    checking the journal holds the run's jobs (``jobs``: (key, stem), in order)."""
    counts = dict.fromkeys(SPLITS, 0)
    skipped: list[tuple[str, str]] = []
    with open(journal, "rb") as fh:
        for line, job in itertools.zip_longest(fh, jobs):
            entry = json.loads(line) if line is not None else None
            if entry is None or job is None or entry["job"] != job[0]:
                raise DataError(
                    f"{journal}: does not list this run's jobs in order (edited?); run generate "
                    "again with --overwrite"
                )
            for r in entry["rows"]:
                counts[r["split"]] += 1
            if "skipped" in entry:
                skipped.append((job[1], entry["skipped"]))
    return counts, skipped


def finish_run(
    out: Path,
    journal: Path,
    ds: Dataset,
    recipe: SynthRecipe,
    identity: dict,
    summary: GenerateSummary,
) -> None:
    """Split files, recipe, dataset card, and last the manifest (renamed into place last, it
    marks the run complete). The lists are streamed from the journal, one read per split that
    writes the manifest and every split file together, so they may be larger than memory."""
    described: dict[str, str] = {}  # the files that describe the dataset: verify checks them
    with contextlib.ExitStack() as stack:  # files are renamed into place in reverse order
        manifest = stack.enter_context(atomic_file(out / MANIFEST, durable=True))
        lists: dict[str, list] = {"train": [], "test": []}  # [(rel, file, sha256)] per split
        for train_rel, test_rel in layout_split_paths(identity["layout"], identity["name"]):
            (out / train_rel).parent.mkdir(exist_ok=True)
            for kind, rel in (("train", train_rel), ("test", test_rel if summary.test else None)):
                if rel is not None:
                    fh = stack.enter_context(atomic_file(out / rel, durable=True))
                    lists[kind].append((rel, fh, hashlib.sha256()))
        for split in SPLITS:
            targets = lists["test" if split == "test" else "train"]
            for row in journal_rows(journal, split):
                manifest.write(manifest_line(row).encode("utf-8"))
                line = (os.path.splitext(os.path.basename(row["image"]))[0] + "\n").encode("utf-8")
                for _, fh, digest in targets:
                    fh.write(line)
                    digest.update(line)
        described.update(
            (rel, digest.hexdigest()) for rel, _, digest in lists["train"] + lists["test"]
        )
        for rel, text in (
            ("recipe.yaml", to_yaml(recipe)),
            ("README.md", dataset_card(ds, recipe, identity, summary)),
        ):
            write_text_atomic(out / rel, text)
            described[rel] = sha256_bytes(text.encode("utf-8"))
        write_text_atomic(
            out / STATE_DIR / DESCRIBED, json.dumps(described, indent=1, sort_keys=True)
        )
