"""Load what the contact sheet shows from a generated folder and write the PNG."""

from __future__ import annotations

from pathlib import Path

from sirst_synth.errors import DataError
from sirst_synth.io.files import (
    check_output_file,
    encode_png,
    read_gray,
    read_mask,
    write_bytes_atomic,
)
from sirst_synth.io.manifest import ManifestRow, read_manifest
from sirst_synth.preview import contact_sheet, preview_picks


def write_preview(
    out: Path, sheet: Path, targets: int = 6, seed: int = 0, overwrite: bool = False
) -> int:
    """Pick ``targets`` complete rotation groups (seeded) and write their contact sheet."""
    check_output_file(sheet, "--sheet", overwrite, [out])
    rows = read_manifest(out)
    originals = {r.source: r for r in rows if r.split == "original"}
    groups: dict[str, list[ManifestRow]] = {}
    for r in rows:
        if r.split == "development":
            groups.setdefault(r.group, []).append(r)
    full = [k for k, g in groups.items() if len(g) == 4]
    pasted = [r for r in rows if r.split == "development" and r.paste]
    if not full and pasted:
        return _write_paste_preview(out, sheet, originals, pasted, targets, seed)
    if not full:
        raise DataError(f"{out}: no target with all four rotations (or pasted target) to show")
    pick = preview_picks(len(full), targets, seed)
    lines = []
    for i in pick:
        g = sorted(groups[full[i]], key=lambda r: r.angle)
        imgs = [read_gray(Path(out) / r.image) for r in g]
        masks = [read_mask(Path(out) / r.mask) for r in g]
        orig = originals.get(g[0].source)
        src = read_gray(Path(out) / orig.image) if orig else imgs[0]
        src_mask = read_mask(Path(out) / orig.mask) if orig else masks[0]
        lines.append((src, src_mask, imgs, masks, tuple(g[0].window)))
    write_bytes_atomic(Path(sheet), encode_png(contact_sheet(lines)))
    return len(lines)


def _write_paste_preview(out, sheet, originals, pasted, n, seed) -> int:
    """Paste samples beside their source image: a zoom on each pasted target, before and
    after (at most 4 targets a row)."""
    from sirst_synth.preview import paste_sheet, pasted_boxes

    pick = preview_picks(len(pasted), n, seed)
    lines = []
    for i in pick:
        r = pasted[i]
        orig = originals[r.source]
        before, before_mask = read_gray(Path(out) / orig.image), read_mask(Path(out) / orig.mask)
        after, after_mask = read_gray(Path(out) / r.image), read_mask(Path(out) / r.mask)
        boxes = pasted_boxes(after_mask & ~before_mask, [tuple(p["at"]) for p in r.paste])
        lines.append((before, before_mask, after, after_mask, boxes))
    write_bytes_atomic(Path(sheet), encode_png(paste_sheet(lines)))
    return len(lines)
