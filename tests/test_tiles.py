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
from sirst_synth.train.model import ChannelAttention, build_model  # noqa: E402

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


@pytest.mark.slow
def test_halo_covers_the_local_receptive_field():
    """With channel attention held fixed, an output pixel depends on inputs at most 122 px
    away, whatever its position on the 16-px pooling grid: HALO is that radius rounded up to
    16. All weights positive and a positive input, so no ReLU hides a dependency."""
    model = build_model("aff-unet-tiny").eval()
    for p in model.parameters():
        p.data.abs_()
    for m in model.modules():
        if isinstance(m, ChannelAttention):
            m.register_forward_hook(lambda mod, inputs, out: inputs[0] * 0.5)
    x = torch.ones(1, 1, 320, 320, requires_grad=True)
    out = model(x)[0]
    radius = 0
    for k in range(16):  # the dependence in y and x is separable: the diagonal covers all
        x.grad = None
        out[0, 0, 160 + k, 160 + k].backward(retain_graph=True)
        ys, xs = np.nonzero(x.grad[0, 0].numpy())
        radius = max(radius, 160 + k - ys.min(), ys.max() - 160 - k, xs.max() - 160 - k)
    assert radius == 122
    assert -(-radius // infer.MULTIPLE) * infer.MULTIPLE == infer.HALO


@pytest.mark.parametrize("name", ["aff-unet-tiny", pytest.param("unet", marks=pytest.mark.slow)])
@pytest.mark.parametrize("shape", [(45, 700), (700, 45)])
def test_tiles_give_the_whole_image_output(name, shape):
    """Tiles of 64 px (11 of them, inner ones with their full halo) and whole-image inference
    agree to float rounding, also where the image is padded to 16 on the right/bottom."""
    model = _model(name)
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    whole = infer.predict(model, image, 0.4, 0.2, CPU, tile=0)
    tiled = infer.predict(model, image, 0.4, 0.2, CPU, tile=64)
    assert tiled.shape == whole.shape == shape
    assert np.abs(tiled - whole).max() < 1e-5
    assert np.abs(whole - whole.mean()).max() > 0.01  # the map is not flat: the check has teeth


def test_tiling_starts_above_one_tile_and_its_halo(monkeypatch):
    """An image that fits one tile plus halo is predicted whole (one model call)."""
    calls = []
    model = _model()
    model.register_forward_pre_hook(lambda m, inputs: calls.append(inputs[0].shape[-2:]))
    image = np.zeros((48, 64 + 2 * infer.HALO), np.uint8)
    infer.predict(model, image, 0.4, 0.2, CPU, tile=64)
    assert calls == [(48, 64 + 2 * infer.HALO)]
    calls.clear()
    image = np.zeros((48, 64 + 2 * infer.HALO + 16), np.uint8)
    infer.predict(model, image, 0.4, 0.2, CPU, tile=64)
    # 4 attention blocks measured (one short pass each) + one full pass, 6 tiles per pass
    assert len(calls) == 5 * 6
    assert max(c[1] for c in calls) == 64 + 2 * infer.HALO


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
