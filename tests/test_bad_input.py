"""Issue: every bad input is either a correct result or a one-line error, and the source is untouched."""

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from conftest import read_jsonl, tree_hashes, write_dataset

from sirst_synth.demo import demo_image


def _pair(i, shape=None):
    img, mask, _ = demo_image(7, i)
    if shape is not None:
        img, mask = img[: shape[0], : shape[1]].copy(), mask[: shape[0], : shape[1]].copy()
    return img, mask * 255


def _base(n=4):
    return {f"{i:03d}": _pair(i) for i in range(n)}


def _dataset(tmp_path, pairs, train, test=None, train_text=None, name="data"):
    return write_dataset(
        tmp_path / name, pairs, train, test if test is not None else [], train_text
    )


def _bank(cli, root, tmp_path, *extra):
    bank = tmp_path / "bank.h5"
    r = cli("build-noise-bank", root, "--bank", bank, "-q", *extra)
    return bank, r


def _check_error(r, code, *needles):
    assert r.code == code, (r.code, r.err)
    assert "Traceback" not in r.err
    lines = [ln for ln in r.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.err
    for n in needles:
        assert n in r.err, (n, r.err)


def _generate(cli, root, bank, out, *extra):
    return cli("generate", root, "--bank", bank, "--out", out, "--json", "--no-test", *extra)


@pytest.mark.parametrize(
    "payload", [b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, b"random bytes, not an image" * 10]
)
def test_undecodable_image(tmp_path, cli, payload):
    pairs = _base()
    pairs["001"] = (payload, pairs["001"][1])
    root = _dataset(tmp_path, pairs, list(pairs), [])
    before = tree_hashes(root)
    _, r = _bank(cli, root, tmp_path)
    _check_error(r, 1, "001.png", "not a decodable image")
    bank, r = _bank(cli, root, tmp_path, "--on-error", "skip")
    assert r.code == 0
    r = _generate(cli, root, bank, tmp_path / "out", "--allow-foreign-bank")
    _check_error(r, 1, "001.png", "not a decodable image")
    r = _generate(cli, root, bank, tmp_path / "out2", "--on-error", "skip", "--allow-foreign-bank")
    assert r.code == 0 and [s for s, _ in json.loads(r.out)["skipped"]] == ["001"]
    assert tree_hashes(root) == before


def test_truncated_png(tmp_path, cli):
    pairs = _base()
    good = cv2.imencode(".png", pairs["002"][0])[1].tobytes()
    pairs["002"] = (good[: len(good) // 2], pairs["002"][1])
    root = _dataset(tmp_path, pairs, list(pairs))
    _, r = _bank(cli, root, tmp_path)
    _check_error(r, 1, "002.png")


def test_missing_mask(tmp_path, cli):
    pairs = _base()
    pairs["003"] = (pairs["003"][0], None)
    root = _dataset(tmp_path, pairs, list(pairs))
    _, r = _bank(cli, root, tmp_path)
    _check_error(r, 1, "003.png: no mask", "add the mask")


def test_mask_of_another_size(tmp_path, cli):
    pairs = _base()
    pairs["000"] = (pairs["000"][0], pairs["000"][1][:100, :120])
    root = _dataset(tmp_path, pairs, list(pairs))
    _, r = _bank(cli, root, tmp_path)
    _check_error(r, 1, "000.png: mask is 120x100 but the image is 256x256")


def test_16bit_rgba_gray_and_thin_images(tmp_path, cli):
    pairs = _base(3)
    img16 = pairs["000"][0].astype(np.uint16) * 257  # 16-bit: scales back to the same 8-bit values
    rgba = cv2.cvtColor(pairs["001"][0], cv2.COLOR_GRAY2BGRA)
    rgba[:, :, 3] = 17  # alpha is dropped
    thin_img = np.full((40, 1), 90, np.uint8)
    thin_mask = np.zeros((40, 1), np.uint8)
    thin_mask[20, 0] = 1  # mask as 0/1
    pairs = {
        "000": (img16, pairs["000"][1]),
        "001": (rgba, pairs["001"][1]),
        "002": pairs["002"],
        "003": (thin_img, thin_mask),
    }
    root = _dataset(tmp_path, pairs, list(pairs))
    _, r = _bank(cli, root, tmp_path)  # --grid 8 cannot cut a 1-pixel-wide image
    _check_error(r, 2, "003.png", "smaller than --grid 8")
    bank, r = _bank(cli, root, tmp_path, "--on-error", "skip", "--json")
    assert r.code == 0, r.err
    assert [s for s, _ in json.loads(r.out)["skipped"]] == ["003"]
    r = _generate(cli, root, bank, tmp_path / "o")  # s = 3 > 1-pixel-wide image
    _check_error(r, 1, "smaller than the --s 3 window", "003.png")
    r = _generate(cli, root, bank, tmp_path / "o0", "--on-error", "skip")
    assert r.code == 0 and [s for s, _ in json.loads(r.out)["skipped"]] == ["003"]
    r = _generate(cli, root, bank, tmp_path / "o1", "--s", "1")
    assert r.code == 0, r.err
    out = tmp_path / "o1"
    assert np.array_equal(
        cv2.imread(str(out / "images/000.png"), cv2.IMREAD_UNCHANGED), _base(1)["000"][0]
    )
    assert np.array_equal(
        cv2.imread(str(out / "images/001.png"), cv2.IMREAD_UNCHANGED), _base(2)["001"][0]
    )
    rows = read_jsonl(out / "manifest.jsonl")
    thin = [x for x in rows if x["source"] == "003" and x["split"] == "development"]
    assert len(thin) == 4 and all(x["window"] == [20, 0, 21, 1] for x in thin)
    assert cv2.imread(str(out / "masks/003.png"), cv2.IMREAD_UNCHANGED)[20, 0] == 255


@pytest.mark.parametrize(
    "text, code, needle",
    [
        ("000\n001\nnope\n", 1, "lists 'nope'"),
        ("000\n001\n000\n", 1, "'000' is listed twice"),
        ("\n\n", 1, "lists no image"),
    ],
)
def test_bad_split_files(tmp_path, cli, text, code, needle):
    root = _dataset(tmp_path, _base(), [], train_text=text)
    _, r = _bank(cli, root, tmp_path)
    _check_error(r, code, needle, "train.txt")


def test_stem_in_both_splits(tmp_path, cli):
    pairs = _base(3)
    root = _dataset(tmp_path, pairs, ["000", "001"], ["001", "002"])
    _, r = _bank(cli, root, tmp_path)
    _check_error(r, 1, "'001' is in both", "test.txt")


def test_windows_line_endings(tmp_path, cli):
    root = _dataset(tmp_path, _base(), [], train_text="000\r\n001\r\n002\r\n")
    bank, r = _bank(cli, root, tmp_path, "--json")
    assert r.code == 0


def test_empty_full_border_and_close_targets(tmp_path, cli):
    img = _pair(0)[0]
    empty = np.zeros((256, 256), np.uint8)
    full = np.full((256, 256), 255, np.uint8)
    border = np.zeros((256, 256), np.uint8)
    for r, c in [
        (0, 0),
        (0, 255),
        (255, 0),
        (255, 255),
        (0, 128),
        (128, 0),
        (255, 128),
        (128, 255),
    ]:
        border[r, c] = 255  # a target touching every border and corner
    close = np.zeros((256, 256), np.uint8)
    close[100, 100] = close[100, 102] = 255  # two targets closer than s = 3
    pairs = {
        "a": (img, empty),
        "b": (img, full),
        "c": (img, border),
        "d": (img, close),
        "e": _pair(1),
    }
    root = _dataset(tmp_path, pairs, list(pairs))
    bank, r = _bank(cli, root, tmp_path)
    assert r.code == 0, r.err
    r = _generate(cli, root, bank, tmp_path / "o")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    n_e = int(cv2.connectedComponents((_pair(1)[1] > 0).astype(np.uint8), connectivity=8)[0] - 1)
    assert res["development"] == 4 * (0 + 1 + 8 + 2 + n_e)
    rows = read_jsonl(tmp_path / "o" / "manifest.jsonl")
    wins = {tuple(x["window"]) for x in rows if x["source"] == "c" and x["split"] == "development"}
    assert wins == {
        (0, 0, 3, 3),
        (0, 253, 3, 256),
        (253, 0, 256, 3),
        (253, 253, 256, 256),
        (0, 127, 3, 130),
        (127, 0, 130, 3),
        (253, 127, 256, 130),
        (127, 253, 130, 256),
    }
    full_rows = [x for x in rows if x["source"] == "b" and x["split"] == "development"]
    assert {tuple(x["center"]) for x in full_rows} == {(128, 128)}  # centroid 127.5 rounds up
    assert cli("verify", tmp_path / "o").code == 0


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--alpha", "-0.1"], "--alpha"),
        (["--alpha", "1.5"], "--alpha"),
        (["--alpha", "nan"], "--alpha"),
        (["--s", "2"], "--s"),
        (["--s", "0"], "--s"),
        (["--s", "-3"], "--s"),
    ],
)
def test_bad_parameters_are_usage_errors(demo_root, tmp_path, cli, flags, needle):
    bank, r = _bank(cli, demo_root, tmp_path)
    assert r.code == 0
    r = _generate(cli, demo_root, bank, tmp_path / "o", *flags)
    _check_error(r, 2, needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, needles",
    [
        (["generate", "x", "--on-error", "maybe"], ["'--on-error'", "generate --help"]),
        (["generate", "x", "--bogus"], ["--bogus", "generate --help"]),
        (["train", "x"], ["'--out'", "train --help"]),
        (["evaluate", "x", "--precision", "fp16"], ["'--precision'", "fp16"]),
        (["--version", "--nope"], ["--nope"]),
        (["nosuchcmd"], ["nosuchcmd", "sirst-synth --help"]),
    ],
)
def test_parse_errors_are_one_line(cli, args, needles):
    # the parser's own errors follow the same rule as ours: one line, exit 2, where to look
    r = cli(*args)
    _check_error(r, 2, "error:", *needles)
    assert "Usage:" not in r.err


def test_bad_banks(demo_root, tmp_path, cli):
    bank, _ = _bank(cli, demo_root, tmp_path)
    data = bank.read_bytes()
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(data[: len(data) // 3])
    _check_error(_generate(cli, demo_root, trunc, tmp_path / "o1"), 1, "trunc.h5", "rebuild")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    _check_error(
        _generate(cli, demo_root, other, tmp_path / "o2"), 1, "not a sirst-synth noise bank"
    )
    text = tmp_path / "text.h5"
    text.write_text("hello")
    _check_error(_generate(cli, demo_root, text, tmp_path / "o3"), 1, "text.h5")
    # a bank of another dataset (fingerprint)
    pairs = _base()
    root = _dataset(tmp_path, pairs, list(pairs), [], name="otherdata")
    (tmp_path / "ob").mkdir()
    foreign, r = _bank(cli, root, tmp_path / "ob")
    assert r.code == 0, r.err
    _check_error(
        _generate(cli, demo_root, foreign, tmp_path / "o4"), 1, "other training files", "rebuild"
    )


def test_out_folders(demo_root, tmp_path, cli):
    before = tree_hashes(demo_root)
    bank, _ = _bank(cli, demo_root, tmp_path)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("user data")
    _check_error(_generate(cli, demo_root, bank, busy), 2, "is not empty")
    _check_error(
        _generate(cli, demo_root, bank, busy, "--overwrite"), 2, "not written by sirst-synth"
    )
    assert (busy / "mine.txt").read_text() == "user data"
    _check_error(_generate(cli, demo_root, bank, demo_root), 2, "inside the source dataset")
    _check_error(
        _generate(cli, demo_root, bank, demo_root / "images" / "x"), 2, "inside the source dataset"
    )
    _check_error(
        _generate(cli, demo_root, bank, demo_root.parent), 2, "contains the source dataset"
    )
    afile = tmp_path / "afile"
    afile.write_text("x")
    _check_error(_generate(cli, demo_root, bank, afile / "sub"), 2, "choose a folder")
    # --overwrite of our own previous output keeps the user's other files
    out = tmp_path / "mine"
    assert _generate(cli, demo_root, bank, out, "--count", "4").code == 0
    (out / "notes.txt").write_text("keep me")
    r = _generate(cli, demo_root, bank, out, "--count", "8", "--overwrite")
    assert r.code == 0 and json.loads(r.out)["development"] == 8
    assert (out / "notes.txt").read_text() == "keep me"
    assert tree_hashes(demo_root) == before


def test_paths_with_spaces_and_non_ascii(tmp_path, cli):
    pairs = _base(3)
    root = _dataset(tmp_path / "dössier with space", pairs, ["000", "001"], ["002"])
    bank, r = _bank(cli, root, tmp_path / "dössier with space")
    assert r.code == 0, r.err
    r = _generate(cli, root, bank, tmp_path / "sortie é ü")
    assert r.code == 0, r.err
    assert cli("verify", tmp_path / "sortie é ü").code == 0


def test_debug_shows_traceback(tmp_path, cli):
    r = cli(
        "--debug",
        "generate",
        tmp_path / "nowhere",
        "--bank",
        tmp_path / "b.h5",
        "--out",
        tmp_path / "o",
    )
    assert r.code == 2 and "Traceback" in r.err and "dataset folder not found" in r.err


def test_zero_accepted_patches_suggests_larger_sigma(demo_root, tmp_path, cli):
    _, r = _bank(cli, demo_root, tmp_path, "--sigma", "0.001")
    _check_error(r, 1, "no noise-prone region", "larger --sigma")


def test_unknown_layout(tmp_path, cli):
    (tmp_path / "x" / "images").mkdir(parents=True)
    (tmp_path / "x" / "masks").mkdir()
    _, r = _bank(cli, tmp_path / "x", tmp_path)
    _check_error(r, 2, "no training split found", "--train-split")
    _ = Path


def test_prediction_of_another_size(demo_root, tmp_path, cli):
    from sirst_synth.io.layouts import open_dataset

    ds = open_dataset(demo_root)
    pred = tmp_path / "pred"
    pred.mkdir()
    for s in ds.test:
        cv2.imwrite(str(pred / f"{s}.png"), np.zeros((256, 256), np.uint8))
    cv2.imwrite(str(pred / f"{ds.test[0]}.png"), np.zeros((128, 256), np.uint8))
    r = cli("evaluate", demo_root, "--pred-dir", pred)
    _check_error(r, 1, f"{ds.test[0]}.png: prediction is 256x128 but the label is 256x256")
    (pred / f"{ds.test[1]}.png").unlink()
    cv2.imwrite(str(pred / f"{ds.test[0]}.png"), np.zeros((256, 256), np.uint8))
    r = cli("evaluate", demo_root, "--pred-dir", pred)
    _check_error(r, 1, f"no prediction for image '{ds.test[1]}'")


def test_pred_dir_scoring_needs_no_torch(demo_root, tmp_path):
    import subprocess
    import sys

    from sirst_synth.io.layouts import open_dataset

    ds = open_dataset(demo_root)
    pred = tmp_path / "pred"
    pred.mkdir()
    for s in ds.test:
        (pred / f"{s}.png").write_bytes(ds.mask_path(s).read_bytes())
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
        "from sirst_synth.cli.main import main\n"
        f"main(['evaluate', {str(demo_root)!r}, '--pred-dir', {str(pred)!r}, '--json'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert (m["IoU"], m["Pd"], m["Fa"]) == (1.0, 1.0, 0.0)


def test_error_text_in_brackets_is_printed_verbatim(tmp_path, cli):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- [bold]\n")  # a YAML list, not a mapping of key: value
    r = cli("build-noise-bank", tmp_path, "--recipe", recipe)
    assert r.code == 2 and "must be a YAML mapping" in r.err
    recipe.write_text("alpha: [0, 1]\n")
    r = cli("build-noise-bank", tmp_path, "--recipe", recipe)
    assert r.code == 2 and "must be a number, got [0, 1]" in r.err
    r = cli("build-noise-bank", tmp_path / "[red]x")  # rich would eat an unescaped tag
    assert r.code == 2 and "[red]x: dataset folder not found" in r.err


def test_a_mistyped_dataset_or_split_is_one_line_before_any_set_up(tmp_path, cli, monkeypatch):
    """The precision probe takes seconds of training steps: a wrong DATA, --val or split file
    is one line before it."""
    loop = pytest.importorskip("sirst_synth.train.loop")
    monkeypatch.setattr(loop, "runtime_for", lambda *a, **k: pytest.fail("probed first"))
    (tmp_path / "half" / "images").mkdir(parents=True)
    for data, needle in (("nope", "nope: dataset folder not found"), ("half", "no masks/ folder")):
        r = cli("train", tmp_path / data, "--out", tmp_path / "run")
        _check_error(r, 2, needle)
        assert not (tmp_path / "run").exists()
        r = cli("study", tmp_path / data, "--out", tmp_path / "s", "--recipe", "study-smoke")
        _check_error(r, 2, needle)  # was: "no test split found"
        assert not (tmp_path / "s").exists()
    root = write_dataset(tmp_path / "d", _base(2), ["000", "001"])
    for flags, code, needle in (
        (["--val", tmp_path / "nope"], 2, "nope: dataset folder not found"),
        (["--val", f"{root}:{tmp_path / 'no.txt'}"], 1, "no.txt: split file not found"),
        (["--train-split", tmp_path / "no.txt"], 1, "no.txt: split file not found"),
    ):
        r = cli("train", root, "--out", tmp_path / "run", *flags)
        _check_error(r, code, needle)
        assert not (tmp_path / "run").exists()
