"""Scoring batches images of one size: each image's map and score as if predicted alone."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sirst_synth.io.samples import Item  # noqa: E402
from sirst_synth.train import infer  # noqa: E402
from sirst_synth.train.device import runtime  # noqa: E402
from sirst_synth.train.model import build_model  # noqa: E402

CPU = runtime("cpu", "fp32")


def test_a_batch_gives_each_image_its_own_map():
    torch.manual_seed(0)
    model = build_model("aff-unet-tiny").eval()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56), dtype=np.uint8) for _ in range(5)]
    alone = [infer.predict(model, im, 0.4, 0.2, CPU) for im in images]
    batch = infer.predict_batch(model, images, 0.4, 0.2, CPU)
    assert len(batch) == 5
    for a, b in zip(alone, batch, strict=True):
        assert a.shape == b.shape == (40, 56) and np.abs(a - b).max() < 1e-5
    assert np.abs(alone[0] - alone[1]).max() > 1e-3  # different images: the check has teeth
    with pytest.raises(ValueError, match="one size"):
        infer.predict_batch(model, [images[0], images[0][:32]], 0.4, 0.2, CPU)


def test_grouping_keeps_every_index_once_and_the_batch_bound():
    shapes = [(8, 8), (16, 8), (8, 8), (8, 8), (16, 8), (8, 8)]
    pairs = [(np.zeros(s), None) for s in shapes]
    assert infer._same_size(pairs, 2) == [[0, 2], [3, 5], [1, 4]]


def test_evaluate_items_scores_as_one_by_one(tmp_path, monkeypatch):
    """Mixed sizes across more than one chunk: totals and maps in the items' order."""
    import cv2

    torch.manual_seed(1)
    model = build_model("aff-unet-tiny").eval()
    rng = np.random.default_rng(2)
    items = []
    for i, shape in enumerate([(32, 48), (48, 32), (32, 48), (32, 48), (48, 32)]):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        mask = np.zeros(shape, np.uint8)
        mask[10:13, 10:13] = 255
        cv2.imwrite(str(tmp_path / f"i{i}.png"), image)
        cv2.imwrite(str(tmp_path / f"m{i}.png"), mask)
        items.append(Item(f"s{i}", tmp_path / f"i{i}.png", tmp_path / f"m{i}.png", f"s{i}"))
    monkeypatch.setattr(infer, "SCORE_CHUNK", 3)
    totals, probs = infer.evaluate_items(model, items, 0.4, 0.2, CPU, 0.3, keep_probs=True)
    singles = [infer.predict(model, cv2.imread(str(it.image), 0), 0.4, 0.2, CPU) for it in items]
    for p, q in zip(probs, singles, strict=True):
        assert p.shape == q.shape and np.abs(p - q).max() < 1e-5
    monkeypatch.setattr(infer, "SCORE_BATCH", 1)  # one image a pass: the unbatched scores
    alone, _ = infer.evaluate_items(model, items, 0.4, 0.2, CPU, 0.3)
    assert totals.scores == alone.scores
