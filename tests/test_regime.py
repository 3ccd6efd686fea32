"""The toolboxes' training regime: target-centred crops, flips, Adam, multistep and warm-up."""

import numpy as np
import pytest
from conftest import demo_with_bank, read_jsonl

from sirst_synth.augment import apply_flips, crop_or_pad, crop_window, draw_flips
from sirst_synth.errors import UsageError
from sirst_synth.recipe import TrainRecipe, load_recipe, resolve_recipe, to_yaml
from sirst_synth.train.schedule import learning_rate


def test_positive_crops_always_hold_a_target_pixel():
    mask = np.zeros((50, 70), np.uint8)
    mask[3, 66] = mask[47, 2] = mask[20, 30] = 1  # near the corners and in the middle
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(500):
        y0, x0 = crop_window(mask, 16, 1.0, rng)
        assert 0 <= y0 <= 50 - 16 and 0 <= x0 <= 70 - 16
        window = mask[y0 : y0 + 16, x0 : x0 + 16]
        assert window.any()
        seen.add((y0, x0))
    assert len(seen) > 100  # positions vary within the allowed range
    # the pixel at (3, 66) forces y0 in [0, 3] and x0 in [51, 54] when it is the one chosen
    only = np.zeros_like(mask)
    only[3, 66] = 1
    starts = {crop_window(only, 16, 1.0, rng) for _ in range(300)}
    assert starts == {(y, x) for y in range(4) for x in range(51, 55)}


def test_pos_prob_zero_draws_as_a_uniform_crop_and_half_is_half():
    mask = np.zeros((64, 64), np.uint8)
    mask[60, 60] = 1
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(20):
        assert crop_window(mask, 16, 0.0, a) == (int(b.integers(0, 49)), int(b.integers(0, 49)))
    rng = np.random.default_rng(1)
    hits = sum(
        bool(mask[y : y + 16, x : x + 16].any())
        for y, x in (crop_window(mask, 16, 0.5, rng) for _ in range(4000))
    )
    # positive crops (~2000 of 4000) always hit; a uniform one holds (60, 60) when both starts
    # are in 45..48 of 0..48: p = (4/49)^2 = 0.0067, so ~13 more
    expected = 2000 + 2000 * (4 / 49) ** 2
    assert expected - 120 < hits < expected + 120
    empty = np.zeros((64, 64), np.uint8)  # no target: a uniform crop, no error
    assert crop_window(empty, 16, 1.0, rng) is not None


def test_small_images_pad_bottom_right():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    mask = np.array([[0, 1, 0], [0, 0, 0]], np.uint8)
    assert crop_window(mask, 4, 1.0, np.random.default_rng(0)) == (0, 0)
    ci, cm = crop_or_pad(image, mask, 4, (0, 0))
    assert ci.tolist() == [[0, 1, 2, 0], [3, 4, 5, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert cm.sum() == 1 and cm[0, 1] == 1


def test_flips_pixel_exact():
    a = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)
    assert apply_flips(a, (False, False, False)).tolist() == a.tolist()
    assert apply_flips(a, (True, False, False)).tolist() == [[7, 8, 9], [4, 5, 6], [1, 2, 3]]
    assert apply_flips(a, (False, True, False)).tolist() == [[3, 2, 1], [6, 5, 4], [9, 8, 7]]
    assert apply_flips(a, (False, False, True)).tolist() == [[1, 4, 7], [2, 5, 8], [3, 6, 9]]
    # all three: up-down, left-right, then transpose
    assert apply_flips(a, (True, True, True)).tolist() == [[9, 6, 3], [8, 5, 2], [7, 4, 1]]
    assert apply_flips(a, (True, True, True)).flags["C_CONTIGUOUS"]
    counts = np.zeros(3)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        counts += draw_flips(rng)
    assert (np.abs(counts / 2000 - 0.5) < 0.04).all()


def test_schedules_by_hand():
    assert learning_rate(1.0, 0, 10) == 1.0
    assert learning_rate(1.0, 5, 10) == pytest.approx(0.5)  # cosine midpoint
    ms = [
        learning_rate(5e-4, e, 400, "multistep", (0.5, 0.75), 0.1)
        for e in (0, 199, 200, 299, 300, 399)
    ]
    assert ms == pytest.approx([5e-4, 5e-4, 5e-5, 5e-5, 5e-6, 5e-6])
    assert learning_rate(0.3, 7, 10, "constant") == 0.3
    # warm-up over 4 steps: 1/4, 2/4, 3/4 then the schedule itself
    warm = [learning_rate(1.0, d, 100, "constant", warmup=4) for d in range(6)]
    assert warm == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_regime_recipe_keys_and_refusals():
    r = load_recipe(
        TrainRecipe, "milestones: [0.25, 0.5]\npos_prob: 0.5\naugment: flips\n", "x", {}
    )
    assert r.milestones == (0.25, 0.5) and r.pos_prob == 0.5 and r.augment == "flips"
    assert "milestones:\n- 0.25\n- 0.5\n" in to_yaml(r)
    assert TrainRecipe(milestones=[0.25, 0.5]) == r.__class__(milestones=(0.25, 0.5))
    for text, key in (
        ("milestones: [0.75, 0.5]", "milestones"),
        ("milestones: [1.5]", "milestones"),
        ("pos_prob: 1.5", "pos_prob"),
        ("augment: rotate", "augment"),
        ("optimizer: sgd", "optimizer"),
        ("scheduler: step", "scheduler"),
        ("warmup: -1", "warmup"),
        ("gamma: 0", "gamma"),
    ):
        with pytest.raises(UsageError, match=key):
            load_recipe(TrainRecipe, text, "r.yaml", {})


def test_a_bad_value_is_blamed_on_the_flag_or_the_file_it_came_from():
    """A flag's bad value names the flag alone (not "defaults:" or a file that holds a good
    value for that key); a file's bad value names the file."""
    msg = "--steps (recipe key 'steps') must be a whole number >= 1, got 0"
    for text, source in ((None, "defaults"), ("steps: 100\n", "r.yaml")):
        with pytest.raises(UsageError) as err:
            load_recipe(TrainRecipe, text, source, {"steps": 0, "crop": None})
        assert str(err.value) == msg
    with pytest.raises(UsageError) as err:
        load_recipe(TrainRecipe, "steps: 0\n", "r.yaml", {"crop": 64})
    assert str(err.value) == f"r.yaml: {msg}"
    with pytest.raises(UsageError) as err:
        resolve_recipe(TrainRecipe, TrainRecipe(), {"steps": 0})
    assert str(err.value) == msg
    with pytest.raises(UsageError) as err:  # a wrong type through the API, no file at all
        resolve_recipe(TrainRecipe, None, {"lr": "fast"})
    assert str(err.value) == "--lr (recipe key 'lr') must be a number, got 'fast'"


@pytest.mark.slow
def test_regime_training_resumes_exactly(tmp_path, cli):
    """Adam, multistep with warm-up, positive crops and flips: --stop-after then --resume gives
    the weights of an uninterrupted run; the flips and crops are drawn per (seed, epoch, group)."""
    import torch

    root = demo_with_bank(tmp_path, images=8, seed=3)
    args = ["--model", "aff-unet-tiny", "--crop", "32", "--batch-size", "4", "--device", "cpu",
            "--precision", "fp32", "-q", "--optimizer", "adam", "--lr", "0.001",
            "--scheduler", "multistep", "--warmup", "2", "--pos-prob", "0.5",
            "--augment", "flips", "--epochs", "3"]  # fmt: skip
    assert cli("train", root / "data", "--out", tmp_path / "a", *args).code == 0
    r = cli("train", root / "data", "--out", tmp_path / "b", "--stop-after", "1", *args)
    assert r.code == 0, r.err
    r = cli("train", root / "data", "--out", tmp_path / "b", "--resume", *args)
    assert r.code == 0, r.err
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert all(torch.equal(wa["model"][k], wb["model"][k]) for k in wa["model"])
    assert wa["recipe"]["optimizer"] == "adam" and "exp_avg" in str(wa["optimizer"]["state"])
    lrs = [row["lr"] for row in read_jsonl(tmp_path / "a" / "metrics.jsonl") if "lr" in row]
    # epochs 0, 1, 2 of 3: warm-up 1/2, then 2/2 of 1e-3; epoch 2 >= 0.5 * 3: x 0.1
    assert lrs == pytest.approx([5e-4, 1e-3, 1e-4])


def test_recipe_yaml_errors_name_line_and_column_and_duplicate_keys():
    from sirst_synth.recipe import parse_yaml

    with pytest.raises(
        UsageError, match=r"r.yaml: not valid YAML at line 3, column 1 \(duplicate key 'lr'\)"
    ):
        parse_yaml("model: unet\nlr: 0.1\nlr: 0.2\n", "r.yaml")
    with pytest.raises(UsageError, match="duplicate key 'a'"):
        parse_yaml("arms:\n  a: {data: original}\n  a: {data: n2n}\n", "s.yaml")
    with pytest.raises(UsageError, match=r"at line 3, column 1 \(expected .,. or .\]."):
        parse_yaml("a: 1\nb: [1, 2\n", "x.yaml")
    assert parse_yaml("a: {b: 1}\nc: [1, 2]\n", "ok") == {"a": {"b": 1}, "c": [1, 2]}
