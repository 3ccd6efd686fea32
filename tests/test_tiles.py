"""Tiled inference: bounded memory with the output of whole-image inference."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import write_dataset  # noqa: E402

from sirst_synth.train import infer  # noqa: E402
from sirst_synth.train.device import runtime  # noqa: E402
from sirst_synth.train.model import build_model  # noqa: E402

CPU = runtime("cpu", "fp32")


def _model(name: str = "aff-unet-tiny", seed: int = 0) -> torch.nn.Module:
    """A random model with non-trivial batch-norm statistics (eval mode)."""
    torch.manual_seed(seed)
    model = build_model(name).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("name", ["aff-unet-tiny", pytest.param("unet", marks=pytest.mark.slow)])
@pytest.mark.parametrize("shape", [(45, 700), (700, 45)])
def test_tiles_give_the_whole_image_output(name, shape):
    """Tiles of 64 and 32 px and whole-image inference agree to float rounding, also where the
    image is padded to 16 on the right/bottom."""
    model = _model(name)
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    whole = infer.predict(model, image, 0.4, 0.2, CPU, tile=0)
    for tile in (64, 32):
        tiled = infer.predict(model, image, 0.4, 0.2, CPU, tile=tile)
        assert tiled.shape == whole.shape == shape
        assert np.abs(tiled - whole).max() < 1e-5
    assert np.abs(whole - whole.mean()).max() > 0.01  # the map is not flat: the check has teeth


def test_tiling_starts_above_one_tile_and_runs_each_layer_once(monkeypatch):
    """An image that fits one tile is predicted whole (one model call); a larger one stage by
    stage, each stage over tiles plus its halo only: here the first encoder block sees
    66 + 18 = 84 of 80 columns, and the whole model never runs."""
    calls, first = [], []
    model = _model()
    model.register_forward_pre_hook(lambda m, inputs: calls.append(inputs[0].shape[-2:]))
    model.enc[0].register_forward_pre_hook(lambda m, inputs: first.append(inputs[0].shape[-2:]))
    infer.predict(model, np.zeros((48, 64), np.uint8), 0.4, 0.2, CPU, tile=64)
    assert calls == [(48, 64)] and first == [(48, 64)]
    calls.clear(), first.clear()
    infer.predict(model, np.zeros((48, 80), np.uint8), 0.4, 0.2, CPU, tile=64)
    assert calls == [] and first == [(48, 72), (48, 24), (48, 70), (48, 22)]


@pytest.mark.parametrize("stage", sorted(infer.HALOS))
def test_every_stage_needs_its_halo(monkeypatch, stage):
    """Without its halo, a stage's tiles see their borders as the image's: the output moves
    (the equality above is not one that any tiling would pass)."""
    model = _model()
    image = np.random.default_rng(1).integers(0, 256, (96, 160), dtype=np.uint8)
    whole = infer.predict(model, image, 0.4, 0.2, CPU, tile=0)
    monkeypatch.setitem(infer.HALOS, stage, 0)
    assert np.abs(infer.predict(model, image, 0.4, 0.2, CPU, tile=32) - whole).max() > 1e-4


@pytest.mark.slow
def test_evaluate_tile_flag(tmp_path, cli):
    """Through the CLI: --tile 64 and --tile 0 give the same metrics and saved maps (to one
    level of 255); bad values are usage errors."""
    from sirst_synth.train.checkpoint import save_checkpoint, weights_state

    pairs = {}
    for stem, shape in (("wide", (40, 690)), ("tall", (690, 40))):
        img = np.random.default_rng(len(stem)).integers(0, 256, shape, dtype=np.uint8)
        mask = np.zeros(shape, np.uint8)
        mask[20:23, 20:23] = 255
        img[20:23, 20:23] = 255
        pairs[stem] = (img, mask)
    data = write_dataset(tmp_path / "data", pairs, train=[], test=list(pairs))
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, weights_state("aff-unet-tiny", _model().state_dict(), 0.4, 0.2))
    out = {}
    for tile in ("0", "64"):
        r = cli(
            "evaluate", data, "--checkpoint", ckpt, "--tile", tile, "--device", "cpu",
            "--precision", "fp32",  # auto would probe, and may choose differently twice
            "--save-pred", tmp_path / f"p{tile}", "--json", "--threshold", "0.3",
        )  # fmt: skip
        assert r.code == 0, r.err
        out[tile] = json.loads(r.out)
    for k in ("IoU", "nIoU", "Pd", "Fa", "targets", "detected"):
        assert out["0"][k] == out["64"][k], k
    for stem in pairs:
        a, b = (cv2.imread(str(tmp_path / p / f"{stem}.png"), 0).astype(int) for p in ("p0", "p64"))
        assert a.shape == pairs[stem][0].shape and np.abs(a - b).max() <= 1
    for bad, words in (("24", "--tile must be 0 (whole images) or a multiple of 16, got 24"),
                       ("-16", "--tile must be 0")):  # fmt: skip
        r = cli("evaluate", data, "--checkpoint", ckpt, "--tile", bad)
        assert r.code == 2 and words in r.err
    r = cli("evaluate", data, "--pred-dir", tmp_path / "p0", "--tile", "64")
    assert r.code == 2 and "--tile goes with --checkpoint" in r.err
