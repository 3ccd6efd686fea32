"""Each arm's training data: the seeded view of the training split it trains on, the noise
bank of that view's images, and the generated set of its data choice (shared by the arms of
one study that use the same one)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from sirst_synth.io.manifest import MANIFEST
from sirst_synth.study.schema import Arm


def data_key(arm: Arm, seed: int, view: str) -> str:
    s = arm.synth
    parts = [arm.data, f"a{s.alpha:g}"]
    if arm.data == "sirst5k":
        parts.append(f"s{s.s}")
    if arm.data == "paste":
        parts.append(f"{s.where}-k{s.k[0]}-{s.k[1]}-x{s.scale[0]:g}-{s.scale[1]:g}-d{s.distance}")
    if s.count is not None:
        parts.append(f"n{s.count}")
    return "-".join(parts + [view, f"seed{seed}"])


def view_key(arm: Arm, seed: int) -> str:
    return "full" if arm.train_fraction == 1 else f"f{arm.train_fraction:g}-seed{seed}"


def bank_for(view: Path, bank: Path | None, path: Path, log: Callable[[str], None]) -> Path:
    """The noise bank of a view's training images: the user's when it was built from exactly
    those files, else one built here (synthesis draws only from the run's training images)."""
    from sirst_synth.bank_build import build_noise_bank
    from sirst_synth.io.bank import read_bank_index
    from sirst_synth.io.files import fingerprint
    from sirst_synth.io.layouts import open_dataset, source_files

    if path.is_file():
        return path
    ds = open_dataset(view, skip_errors=True)
    if bank is not None:
        mine = fingerprint(ds.root, source_files(ds, ds.train))
        if read_bank_index(bank).attrs.get("fingerprint") == mine:
            return bank
    log(f"noise bank of {view.name}'s {len(ds.train)} training images")
    path.parent.mkdir(parents=True, exist_ok=True)
    build_noise_bank(view, path, skip_errors=True, resume=True)
    return path


def ensure_data(view: Path, bank: Path, out: Path, arm: Arm, seed: int) -> Path:
    """The generated folder of this data choice, view and seed, shared by the arms using it."""
    from sirst_synth.generate import generate

    target = out / "data" / data_key(arm, seed, view.name)
    if (target / MANIFEST).is_file():
        return target
    synth = dataclasses.replace(arm.synth, seed=seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    generate(
        view,
        bank,
        target,
        synth,
        workers=1,
        resume=target.is_dir() and any(target.iterdir()),
        skip_errors=True,
    )
    return target
