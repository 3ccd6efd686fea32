"""Write the procedural demo dataset to disk in DNA-Net layout (as NUDT-SIRST ships)."""

from __future__ import annotations

from pathlib import Path

from sirst_synth.demo import demo_image, demo_split
from sirst_synth.errors import UsageError
from sirst_synth.io.files import (
    check_folder_path,
    encode_png,
    make_folders,
    write_bytes_atomic,
    write_text_atomic,
)
from sirst_synth.progress import Progress
from sirst_synth.targets import components


def write_demo_dataset(
    out: Path, images: int = 64, seed: int = 0, progress: Progress | None = None
) -> dict:
    """``images/``, ``masks/`` (0/255) and ``50_50/{train,test}.txt``; returns counts."""
    progress = progress or Progress()
    if images < 2:
        raise UsageError(f"--images must be at least 2 (one train, one test), got {images}")
    out = Path(out)
    check_folder_path(out, "OUT", "for the demo dataset")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; choose a new folder for the demo dataset")
    make_folders(out, ("images", "masks", "50_50"), "a new folder for the demo dataset")
    stems = [f"{i + 1:06d}" for i in range(images)]
    targets = 0
    progress.start("drawing demo scenes", images)
    for i, stem in enumerate(stems):
        img, mask, _ = demo_image(seed, i)
        targets += components(mask).count
        write_bytes_atomic(out / "images" / f"{stem}.png", encode_png(img))
        write_bytes_atomic(out / "masks" / f"{stem}.png", encode_png(mask * 255))
        progress.advance()
    progress.stop()
    train, test = demo_split(stems, seed)
    write_text_atomic(out / "50_50" / "train.txt", "\n".join(train) + "\n")
    write_text_atomic(out / "50_50" / "test.txt", "\n".join(test) + "\n")
    write_text_atomic(
        out / "README.md",
        f"# sirst-synth demo dataset\n\n{images} procedural 256x256 infrared-like images "
        f"(seed {seed}), {targets} targets, DNA-Net layout: {len(train)} train, {len(test)} test.\n",
    )
    return {"images": images, "train": len(train), "test": len(test), "targets": targets}
