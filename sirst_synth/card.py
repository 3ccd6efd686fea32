"""The dataset card (OUT/README.md) of a generate run: plain text from the run's numbers."""

from __future__ import annotations

from typing import Any

from sirst_synth import __version__
from sirst_synth.io.layouts import (
    Dataset,
    layout_split_paths,
)
from sirst_synth.recipe import SynthRecipe


def dataset_card(ds: Dataset, recipe: SynthRecipe, identity: dict, summary: Any) -> str:
    """The OUT/README.md: counts, command, recipe, seed, version (layout and name from the run),
    the split sizes against what the source listed, and every skipped pair, so nobody compares
    with a published table without knowing."""
    layout, name = identity["layout"], identity["name"]
    count = "" if recipe.count is None else f" --count {recipe.count}"
    mode = (
        ""
        if recipe.mode == "sirst5k"
        else f" (mode {recipe.mode}: Noise2Noise only, nothing rotated)"
    )
    gray = identity.get("test_gray")
    test_how = (
        "converted like the training images (one 8-bit channel, masks 0/255), `--test-gray`"
        if gray
        else "copied byte for byte"
    )
    skipped = "".join(f"- `{s}`: {why}\n" for s, why in summary.skipped) or "none\n"
    split_files = ", ".join(f"`{a}` + `{b}`" for a, b in layout_split_paths(layout, name))
    listed_train, listed_test = len(ds.train), len(ds.test)
    return f"""# {name}: a SIRST-5K style dataset

Synthesised by sirst-synth {__version__} from `{ds.name}` ({ds.layout} layout) following
SIRST-5K (arXiv 2403.05416): Noise2Noise displacement with a noise bank
(`I_mix = alpha * N + (1 - alpha) * I`) and negative augmentation (the s x s window around
every target rotated by 0, 90, 180 and 270 degrees, counter-clockwise, in image and mask alike){mode}.

| split | images |
| --- | --- |
| original (training images, as one 8-bit channel) | {summary.originals} of {listed_train} listed |
| development (synthesised) | {summary.development} |
| training total | {summary.originals + summary.development} |
| test ({test_how}) | {summary.test} of {listed_test} listed |

A split smaller than its source list lost the pairs under "Skipped inputs": compare scores on
this test split with published tables only knowing that.

Targets in the training masks: {summary.targets}; training images without a target:
{summary.images_without_target}; noise passes: {summary.passes}.

Command:

    sirst-synth generate DATASET --bank BANK --out OUT --alpha {recipe.alpha} --s {recipe.s} --seed {recipe.seed}{count} --split-files {layout}{" --test-gray" if gray else ""}

Recipe: `recipe.yaml` (alpha {recipe.alpha}, s {recipe.s}, seed {recipe.seed}); noise bank
sigma {identity["bank_params"]["sigma"]}, mu {identity["bank_params"]["mu"]}, grid {identity["bank_params"]["grid"]}.
Source fingerprint `{identity["source_fingerprint"]}`.{_range_note(identity)}

Files: `images/`, `masks/` (0/255), split files {split_files} (BasicIRSTD finds
`img_idx/*_{name}.txt` by this folder's name, DNA-Net reads `50_50/`), `manifest.jsonl` (one
JSON object per sample: paths, split, source, noise patch, target, centre, window
[row0, col0, row1, col1), angle, sha256 of both files). Check it with `sirst-synth verify OUT`.

Skipped inputs: {skipped}"""


def _range_note(identity: dict) -> str:
    """How 16-bit and float images became 8-bit, when the bank recorded a range."""
    if not identity.get("value_range"):
        return ""
    lo, hi = identity["value_range"]
    return (
        f"\n16-bit and float images were read as {lo:g}..{hi:g} -> 0..255 (the training "
        "split's range, `build-noise-bank --range train`); `train` and `evaluate` read the "
        "test images the same way."
    )
