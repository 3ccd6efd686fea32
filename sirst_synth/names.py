"""The allowed names of every choice a recipe or flag makes, in one place.

The recipe checks, the CLI's choices and the study's checks all read these tuples.
"""

from __future__ import annotations

#: ``TrainRecipe.model`` (``sirst_synth.train.model.WIDTHS`` builds them).
MODELS = ("aff-unet", "aff-unet-tiny", "unet")
#: L_Neg modes of ``TrainRecipe.neg_loss``.
NEG_LOSS = ("sum", "min", "off")
#: ``TrainRecipe.optimizer``.
OPTIMIZERS = ("adagrad", "adam")
#: ``TrainRecipe.schedule``: the learning rate as a function of progress.
SCHEDULES = ("cosine", "multistep", "constant")
#: ``TrainRecipe.augment``.
AUGMENTS = ("none", "flips")
#: Synthesis modes of ``SynthRecipe.mode``.
SYNTH_MODES = ("sirst5k", "n2n", "paste")
#: ``SynthRecipe.where``: where pasted targets may go.
WHERE = ("flat", "any")
#: ``--precision``: auto resolves to one of the other two per machine.
PRECISIONS = ("auto", "bf16", "fp32")
#: ``--split`` of evaluate.
SPLIT_CHOICES = ("train", "test", "all")

#: How images that are not 8-bit are read: ``full`` (16-bit /257, floats in [0, 1] x255,
#: ambiguous files refused) or ``train`` (the training split's own range mapped to 0..255).
RANGE_MODES = ("full", "train")

#: The one unit convention of every table and plot: IoU, nIoU and Pd as percentages (x100), Fa
#: in false-alarm pixels per million (x1e-6), the field's units. A column is labelled
#: ``metric_label(key)``: "IoU x100" reads "the value shown is IoU times 100".
METRIC_SCALE = {"IoU": 100.0, "nIoU": 100.0, "Pd": 100.0, "Fa": 1e6}
METRIC_UNIT = {"IoU": "x100", "nIoU": "x100", "Pd": "x100", "Fa": "x1e-6"}
UNITS_SENTENCE = "IoU, nIoU and Pd x100; Fa x1e-6 (false-alarm pixels per million)"


def metric_label(key: str) -> str:
    return f"{key} {METRIC_UNIT[key]}"


def in_units(key: str, value: float, signed: bool = False) -> str:
    """A metric (or a difference of two, ``signed``) in its table unit, two decimals."""
    return f"{value * METRIC_SCALE[key]:{'+' if signed else ''}.2f}"
