"""Hardening, second round (continued): what --overwrite may delete, what each reader accepts,
and the messages that must tell the truth."""

import builtins
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unicodedata

import cv2
import numpy as np
import pytest
from conftest import demo_with_bank, one_line, tree_hashes, write_dataset

from sirst_synth.errors import DataError


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_with_bank(tmp_path_factory.mktemp("hard3"), images=6, seed=7)


def _generate(cli, demo, out, *extra):
    return cli("generate", demo / "data", "--bank", demo / "bank.h5", "--out", out, "--json",
               "--count", "4", *extra)  # fmt: skip


def test_overwrite_needs_our_run_file_not_a_file_named_manifest(demo, tmp_path, cli):
    """A folder that merely holds a file called manifest.jsonl is not ours."""
    out = tmp_path / "theirs"
    (out / "images").mkdir(parents=True)
    (out / "images" / "a.png").write_bytes(b"user image")
    (out / "manifest.jsonl").write_text("{}\n")
    before = tree_hashes(out)
    r = _generate(cli, demo, out, "--overwrite")
    assert r.code == 2 and "not written by sirst-synth" in one_line(r.err)
    assert tree_hashes(out) == before


def test_overwrite_deletes_only_what_the_run_listed(demo, tmp_path, cli):
    out = tmp_path / "ours"
    assert _generate(cli, demo, out).code == 0
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    (out / "images" / "mine.png").write_bytes(b"the user's own file")
    (out / "50_50" / "my_split.txt").write_text("x\n")
    before = tree_hashes(out)
    r = _generate(cli, demo, out, "--overwrite")
    line = one_line(r.err)
    assert r.code == 2 and "was not written by the previous run" in line
    assert "images/mine.png (and 1 more)" in line
    assert tree_hashes(out) == before  # checked whole before anything is deleted
    (out / "images" / "mine.png").unlink()
    (out / "50_50" / "my_split.txt").unlink()
    (out / "notes.txt").write_text("keep")
    r = _generate(cli, demo, out, "--overwrite", "--count", "8")
    assert r.code == 0, r.err
    assert (
        json.loads(r.out)["development"] == 8
        and sum(x["split"] == "development" for x in rows) == 4
    )
    assert (out / "notes.txt").read_text() == "keep"
    now = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    files = {p.relative_to(out).as_posix() for p in (out / "images").rglob("*")}
    assert files == {r["image"] for r in now}  # nothing of the first run is left over


def test_overwrite_of_a_stopped_run_takes_its_unlisted_job_files(demo, tmp_path, cli):
    """A run killed between a job's files and its journal line leaves them unlisted: they are
    the run's (PNGs directly in images/ and masks/), and --overwrite replaces them."""
    out = tmp_path / "stopped"
    assert _generate(cli, demo, out).code == 0
    (out / "manifest.jsonl").unlink()  # as if stopped before its manifest: the journal lists
    (out / ".sirst-synth" / "journal.jsonl").write_text("")  # nothing finished
    r = _generate(cli, demo, out, "--overwrite")
    assert r.code == 0, r.err
    assert json.loads(r.out)["development"] == 4


def _pair(rng, targets=((5, 5), (20, 24))):
    """A 32x32 image with 2x2 targets at the given corners, and its 0/255 mask."""
    image = rng.integers(20, 60, (32, 32)).astype(np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    for y, x in targets:
        image[y : y + 2, x : x + 2], mask[y : y + 2, x : x + 2] = 250, 255
    return image, mask


@pytest.fixture
def scored(tmp_path):
    """Three test images (two targets each) and their perfect predictions as 0/255 masks."""
    rng = np.random.default_rng(0)
    pairs = {f"s{i}": _pair(rng) for i in range(3)}
    root = write_dataset(tmp_path / "ds", pairs, ["s0"], ["s1", "s2"])
    return root, pairs


def _labels(mask: np.ndarray) -> np.ndarray:
    """The instance-label map of a mask (0 background, 1..k targets), as OpenCV numbers them."""
    return cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)[1]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_label_map_is_refused_under_auto_and_read_as_labels_when_asked(
    scored, tmp_path, cli, dtype
):
    root, pairs = scored
    pred = tmp_path / "pred"
    pred.mkdir()
    for stem in ("s1", "s2"):
        labels = _labels(pairs[stem][1])
        assert sorted(np.unique(labels)) == [0, 1, 2]  # the case of the issue: levels 0, 1, 2
        cv2.imwrite(str(pred / f"{stem}.png"), labels.astype(dtype))
    r = cli("evaluate", root, "--pred-dir", pred, "--json")
    line = one_line(r.err)
    assert r.code == 1 and "s1.png" in line and "--pred-kind labels" in line
    r = cli("evaluate", root, "--pred-dir", pred, "--pred-kind", "labels", "--json")
    m = json.loads(r.out)
    assert r.code == 0 and (m["IoU"], m["Pd"], m["targets"], m["detected"]) == (1.0, 1.0, 4, 4)
    r = cli("evaluate", root, "--pred-dir", pred, "--pred-kind", "probability", "--json")
    if dtype == np.uint8:  # read /255, every level is below 0.5: nothing detected
        assert r.code == 0 and json.loads(r.out)["Pd"] == 0.0
    else:  # 16 bits that never exceed 255 stay ambiguous as probabilities
        assert r.code == 1 and "never exceed 255" in one_line(r.err)


def test_a_probability_map_is_not_taken_for_labels(tmp_path):
    """A smooth map varies inside its blobs: read /255 under auto, whatever its top level."""
    from sirst_synth.convert import to_probability

    prob = np.zeros((8, 8), np.uint8)
    prob[2:5, 2:5] = [[10, 20, 10], [20, 40, 20], [10, 20, 10]]
    assert to_probability(prob)[3, 3] == pytest.approx(40 / 255)
    flat = np.zeros((8, 8), np.uint8)
    flat[1:3, 1:3], flat[5:7, 5:7] = 1, 2
    with pytest.raises(DataError, match="flat regions"):
        to_probability(flat)
    assert to_probability(flat, "labels").sum() == 8.0
    single = (flat > 0).astype(np.uint8) * 7  # one non-zero level: not a label map
    assert to_probability(single)[1, 1] == pytest.approx(7 / 255)


def test_npy_predictions_and_upper_case_extensions_are_found(scored, tmp_path, cli):
    root, pairs = scored
    pred = tmp_path / "pred"
    pred.mkdir()
    np.save(pred / "s1.npy", (pairs["s1"][1] > 0).astype(np.float32))
    cv2.imwrite(str(pred / "s2.PNG"), pairs["s2"][1])
    r = cli("evaluate", root, "--pred-dir", pred, "--json")
    m = json.loads(r.out)
    assert r.code == 0 and (m["IoU"], m["Pd"], m["detected"]) == (1.0, 1.0, 4)
    (pred / "s2.PNG").unlink()
    r = cli("evaluate", root, "--pred-dir", pred, "--json")
    line = one_line(r.err)
    assert r.code == 1 and "no prediction for image 's2'" in line and ".npy" in line
    np.save(pred / "s2.npy", np.full((32, 32), 3.0, np.float32))  # kelvin, say: not [0, 1]
    r = cli("evaluate", root, "--pred-dir", pred, "--json")
    assert r.code == 1 and "s2.npy: float prediction outside [0, 1]" in one_line(r.err)


def test_split_all_reports_an_image_without_mask(scored, tmp_path, cli):
    root, pairs = scored
    cv2.imwrite(str(root / "images" / "lonely.png"), pairs["s1"][0])
    r = cli("evaluate", root, "--pred-dir", root / "masks", "--split", "all", "--json")
    assert r.code == 1 and "lonely" in one_line(r.err)
    r = cli("evaluate", root, "--pred-dir", root / "masks", "--split", "all", "--json",
            "--on-error", "skip")  # fmt: skip
    m = json.loads(r.out)
    assert r.code == 0 and m["images"] == 3 and [s for s, _ in m["skipped"]] == ["lonely"]


def test_a_stem_ending_in_pixels0_finds_its_mask(tmp_path, cli):
    """images/X_pixels0.png with masks/X_pixels0.png: the mask is there (not 'no mask')."""
    rng = np.random.default_rng(1)
    pairs = {"a_pixels0": _pair(rng), "b": _pair(rng)}
    root = write_dataset(tmp_path / "ds", pairs, ["b"], ["a_pixels0"])
    r = cli("evaluate", root, "--pred-dir", root / "masks", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["Pd"] == 1.0


def test_a_decomposed_file_name_matches_its_composed_split_line(tmp_path, cli):
    """macOS writes 'é' as e + U+0301 (NFD); a split file typed elsewhere holds U+00E9 (NFC)."""
    rng = np.random.default_rng(2)
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    pairs = {nfd: _pair(rng), "b": _pair(rng)}
    root = write_dataset(tmp_path / "ds", pairs, ["b"], [nfc])
    r = cli("evaluate", root, "--pred-dir", root / "masks", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["images"] == 1 and json.loads(r.out)["Pd"] == 1.0


def _run(*args, **kw):
    """The installed command in a subprocess (what a shell user runs)."""
    cmd = [sys.executable, "-m", "sirst_synth", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def test_demo_dataset_onto_a_file_is_a_usage_error(tmp_path, cli):
    (tmp_path / "afile").write_text("mine")
    r = cli("demo-dataset", tmp_path / "afile", "--images", "2", "-q")
    assert r.code == 2 and "is a file" in one_line(r.err)
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_full_or_closed_stdout_isone_line():
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "sirst_synth", "recipes", "--json"],
                           stdout=full, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert r.returncode == 1 and "cannot write to standard output" in one_line(r.stderr)
    shell = f"'{sys.executable}' -m sirst_synth recipes --json >&-"
    r = subprocess.run(["bash", "-c", shell], capture_output=True, text=True)
    assert r.returncode == 1 and "standard output is closed" in one_line(r.stderr)
    r = subprocess.run(["bash", "-c", shell.replace(" --json", "")], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""  # without --json nothing needed stdout


def test_a_tilde_after_equals_is_the_home_folder(tmp_path):
    """The shell leaves `--json-out=~/x.json` alone; the command expands it (no folder `~`)."""
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    r = _run("demo-dataset", tmp_path / "d", "--images", "2", "-q", "--json-out=~/x.json",
             env=env, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "home" / "x.json").read_text())["images"] == 2
    assert not (tmp_path / "~").exists()


@pytest.mark.slow
def test_sigterm_says_how_to_resume(demo, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sirst_synth", "train", str(demo / "data"), "--out", str(out),
         "--epochs", "50", "--model", "aff-unet-tiny", "--crop", "32", "--device", "cpu",
         "--precision", "fp32", "-q"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 60
    while not (out / "metrics.jsonl").is_file() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143
    assert "terminated (SIGTERM)" in one_line(err) and "--resume" in err


def test_no_noise_prone_region_says_what_rejected_them(tmp_path, cli):
    rng = np.random.default_rng(3)
    pairs = {}
    for i in range(2):  # strong noise everywhere: every region fails the variance test
        image = rng.integers(0, 256, (64, 64)).astype(np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        mask[30:32, 30:32] = 255
        pairs[f"n{i}"] = (image, mask)
    root = write_dataset(tmp_path / "ds", pairs, ["n0", "n1"], [])
    r = cli("build-noise-bank", root, "--bank", tmp_path / "b.h5", "-q")
    line = one_line(r.err)
    # 2 images x 64 regions of 8x8; each 2x2 target (rows and columns 30-31) lies in one region
    assert r.code == 1 and "no noise-prone region among 128" in line
    assert "rejected: 2 for touches a target, 126 for variance" in line
    assert line.endswith("try a larger --sigma")


def test_sizes_are_shown_in_a_unit_that_shows_them():
    from sirst_synth.io.outdir import byte_size

    assert [byte_size(n) for n in (512, 2_500, 3_200_000, 4.56e9)] == [
        "512 B", "2.5 kB", "3.2 MB", "4.6 GB"
    ]  # fmt: skip


def test_a_too_long_name_says_so(demo, tmp_path, cli):
    r = _generate(cli, demo, tmp_path / ("x" * 300))
    line = one_line(r.err)
    assert r.code in (1, 2) and "file name too long (a name of 300 bytes" in line


def test_a_skip_listing_does_not_suggest_the_flag_that_was_passed(scored, tmp_path, cli):
    root, pairs = scored
    cv2.imwrite(str(root / "masks" / "s2.png"), np.zeros((16, 16), np.uint8))
    r = cli("evaluate", root, "--pred-dir", root / "masks", "--json")
    assert r.code == 1 and one_line(r.err).endswith("fix the mask (or pass --on-error skip)")
    r = cli("evaluate", root, "--pred-dir", root / "masks", "--json", "--on-error", "skip")
    assert r.code == 0 and "skipped s2" in r.err and "--on-error" not in r.err
    ((stem, why),) = json.loads(r.out)["skipped"]  # the JSON (and eval.json) list it alike
    assert stem == "s2" and why.endswith("fix the mask")


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_a_truncated_file_is_refused_before_the_decoder_speaks(tmp_path, ext):
    """Cut files whose headers are whole: OpenCV would print the decoder's complaint first;
    both are refused in one line that names the file, before the decoder runs."""
    from sirst_synth.io.files import decode_bytes

    image = np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8)
    data = cv2.imencode(ext, image)[1].tobytes()
    assert decode_bytes(data, tmp_path / f"a{ext}").shape == (64, 64)
    cut = data[: int(len(data) * 0.7)]
    with pytest.raises(DataError, match=rf"a{ext}: not a decodable image \(truncated"):
        decode_bytes(cut, tmp_path / f"a{ext}")


def test_generate_skips_a_truncated_training_image_in_its_worker(demo, tmp_path, cli):
    data = tmp_path / "data"
    shutil.copytree(demo / "data", data)
    stem = (data / "50_50" / "train.txt").read_text().split()[0]
    path = data / "images" / f"{stem}.png"
    path.write_bytes(path.read_bytes()[:-200])  # the header reads, the pixels are cut
    bank = tmp_path / "bank.h5"
    assert cli("build-noise-bank", data, "--bank", bank, "-q", "--on-error", "skip").code == 0
    r = cli("generate", data, "--bank", bank, "--out", tmp_path / "o", "--json", "-q")
    assert r.code == 1 and f"{stem}.png: not a decodable image" in one_line(r.err)
    r = cli("generate", data, "--bank", bank, "--out", tmp_path / "o2", "--json", "-q",
            "--on-error", "skip", "--workers", "2")  # fmt: skip
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert [s for s, _ in summary["skipped"]] == [stem]
    rows = [json.loads(x) for x in (tmp_path / "o2" / "manifest.jsonl").read_text().splitlines()]
    assert stem not in {x["source"] for x in rows}
    assert cli("verify", tmp_path / "o2", "-q").code == 0  # nothing of the skipped jobs left


@pytest.mark.slow
def test_sigterm_stops_generate_and_its_workers(tmp_path):
    """The pool's workers die of SIGTERM (the parent's handler, inherited by fork, would keep
    them alive and the run hanging)."""
    data = tmp_path / "data"
    assert _run("demo-dataset", data, "--images", "120", "-q").returncode == 0
    assert _run("build-noise-bank", data, "--bank", tmp_path / "b.h5", "-q").returncode == 0
    out = tmp_path / "o"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sirst_synth", "generate", str(data), "--bank",
         str(tmp_path / "b.h5"), "--out", str(out), "-q", "--workers", "2"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    journal = out / ".sirst-synth" / "journal.jsonl"
    while proc.poll() is None and not (journal.is_file() and journal.stat().st_size):
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=20)[1]  # a bound on a hang, not a speed test
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 143 and "--resume" in one_line(err)
    assert _run("generate", data, "--bank", tmp_path / "b.h5", "--out", out, "--resume",
                "-q").returncode == 0  # fmt: skip


def test_outputs_inside_a_symlinked_source_folder_are_refused(demo, tmp_path, cli):
    """images/ a link to another folder: OUT inside that folder would write into the source."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(demo / "data" / "masks", data / "masks")
    shutil.copytree(demo / "data" / "50_50", data / "50_50")
    shutil.copytree(demo / "data" / "images", tmp_path / "real")
    (data / "images").symlink_to(tmp_path / "real")
    before = tree_hashes(tmp_path / "real")
    bank = demo / "bank.h5"
    r = cli("generate", data, "--bank", bank, "--out", tmp_path / "real" / "o", "-q",
            "--allow-foreign-bank")  # fmt: skip
    assert r.code == 2 and f"its files lie in {tmp_path / 'real'}" in one_line(r.err)
    r = cli("train", data, "--out", tmp_path / "real" / "run", "--epochs", "1", "-q")
    assert r.code == 2 and "lies inside DATA" in one_line(r.err)
    r = cli("build-noise-bank", data, "--bank", tmp_path / "real" / "b.h5", "-q")
    assert r.code == 2 and "inside the source dataset" in one_line(r.err)
    assert tree_hashes(tmp_path / "real") == before


def test_overwrite_replaces_a_cut_bank_and_keeps_other_files(demo, tmp_path, cli):
    import h5py

    cut = tmp_path / "cut.h5"
    cut.write_bytes((demo / "bank.h5").read_bytes()[:3000])
    r = cli("build-noise-bank", demo / "data", "--bank", cut, "-q", "--overwrite")
    assert r.code == 0, r.err
    assert cut.read_bytes() == (demo / "bank.h5").read_bytes()  # rebuilt whole, same bytes
    text = tmp_path / "notes.h5"
    text.write_text("my notes")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2]
    before = other.read_bytes()
    for path, words in ((text, "not an HDF5 file"), (other, "not a sirst-synth noise bank")):
        r = cli("build-noise-bank", demo / "data", "--bank", path, "-q", "--overwrite")
        assert r.code == 2 and words in one_line(r.err) and "refusing to replace" in r.err
    assert text.read_text() == "my notes" and other.read_bytes() == before


def test_verify_warns_when_a_rename_hides_the_split_files_from_basicirstd(demo, tmp_path, cli):
    out = tmp_path / "sirst5k"
    assert _generate(cli, demo, out).code == 0
    r = cli("verify", out, "--json")
    assert r.code == 0 and json.loads(r.out)["warnings"] == []
    moved = out.rename(tmp_path / "Mine")
    r = cli("verify", moved, "--json")
    assert r.code == 0  # the files are whole: a warning, not a problem
    (warning,) = json.loads(r.out)["warnings"]
    assert "renamed from 'sirst5k' to 'Mine'" in warning
    assert "img_idx/train_Mine.txt and img_idx/test_Mine.txt" in warning
    assert r.err.startswith("warning")


def test_save_pred_onto_a_file_is_a_usage_error(demo, tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", demo / "data", "--out", run, "--epochs", "1", "--model", "aff-unet-tiny",
               "--crop", "32", "--device", "cpu", "--precision", "fp32", "-q").code == 0  # fmt: skip
    (tmp_path / "sp").write_text("mine")
    r = cli("evaluate", demo / "data", "--checkpoint", run / "last.pt", "--save-pred",
            tmp_path / "sp", "-q")  # fmt: skip
    assert r.code == 2 and "--save-pred" in one_line(r.err) and "is a file" in r.err
    assert (tmp_path / "sp").read_text() == "mine"


def test_a_value_range_maps_16_bit_and_float_images_by_hand():
    from sirst_synth.convert import to_gray_u8

    counts = np.array([[1000, 3000], [5000, 2000]], np.uint16)  # 14-bit sensor counts
    # (v - 1000) * 255 / 4000, rounded half up: 0, 127.5 -> 128, 255, 63.75 -> 64
    assert to_gray_u8(counts, (1000.0, 5000.0)).tolist() == [[0, 128], [255, 64]]
    # the fixed rule keeps only v / 257: 4, 12, 19, 8 (16 gray levels for the whole range)
    assert to_gray_u8(counts).tolist() == [[4, 12], [19, 8]]
    kelvin = np.array([[280.0, 300.0], [320.0, 330.0]], np.float32)
    assert to_gray_u8(kelvin, (280.0, 320.0)).tolist() == [[0, 128], [255, 255]]  # clipped
    with pytest.raises(DataError, match="float image outside"):
        to_gray_u8(kelvin)
    eight = np.array([[7, 200]], np.uint8)  # 8-bit images are read as they are
    assert to_gray_u8(eight, (1000.0, 5000.0)).tolist() == [[7, 200]]


def test_range_train_from_bank_to_generate_train_and_evaluate(tmp_path, cli):
    """14-bit data: the bank records the training split's range, generate reads the images
    that way, train keeps it in the checkpoint, evaluate reads the raw test images with it."""
    import torch

    rng = np.random.default_rng(5)
    pairs = {}
    for i in range(6):
        image = rng.integers(1200, 1600, (64, 64)).astype(np.uint16)
        image[0, 0], image[-1, -1] = 1000 + i, 5000 - i  # the extremes of each image
        mask = np.zeros((64, 64), np.uint8)
        mask[20:23, 30:33], image[20:23, 30:33] = 255, 4000
        pairs[f"r{i}"] = (image, mask)
    root = write_dataset(tmp_path / "ds", pairs, ["r0", "r1", "r2", "r3"], ["r4", "r5"])
    bank = tmp_path / "b.h5"
    r = cli("build-noise-bank", root, "--bank", bank, "--range", "train", "-q", "--sigma", "1e6")
    assert r.code == 0, r.err
    from sirst_synth.io.bank import bank_range, read_bank_index

    assert bank_range(read_bank_index(bank)) == (1000.0, 5000.0)  # r0: 1000 and 5000
    out = tmp_path / "g"
    r = cli("generate", root, "--bank", bank, "--out", out, "--count", "4", "-q")
    assert r.code == 0, r.err
    original = cv2.imread(str(out / "images" / "r1.png"), cv2.IMREAD_UNCHANGED)
    want = np.floor((pairs["r1"][0].astype(np.float64) - 1000) * 255 / 4000 + 0.5)
    assert original.dtype == np.uint8 and np.array_equal(original, np.clip(want, 0, 255))
    test_copy = cv2.imread(str(out / "images" / "r4.png"), cv2.IMREAD_UNCHANGED)
    assert test_copy.dtype == np.uint16  # copied byte for byte, read by the range when used
    run = tmp_path / "run"
    r = cli("train", out, "--out", run, "--epochs", "1", "--model", "aff-unet-tiny", "--crop",
            "32", "--device", "cpu", "--precision", "fp32", "-q")  # fmt: skip
    assert r.code == 0, r.err
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["norm"]["value_range"] == [1000.0, 5000.0]
    r = cli("evaluate", root, "--checkpoint", run / "last.pt", "--json", "--device", "cpu")
    assert r.code == 0, r.err
    assert json.loads(r.out)["images"] == 2
    # train on the raw folder: --range train computes the range of its own training images
    r = cli("train", root, "--out", tmp_path / "run2", "--epochs", "1", "--model",
            "aff-unet-tiny", "--crop", "32", "--device", "cpu", "--precision", "fp32", "-q",
            "--range", "train")  # fmt: skip
    assert r.code == 0, r.err
    state = torch.load(tmp_path / "run2" / "last.pt", weights_only=True)
    assert state["norm"]["value_range"] == [1000.0, 5000.0]


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder whose writes fail as on a read-only mount (the tests may run as root, who
    writes anywhere): every mkdir and every file opened for writing below it is refused."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real_mkdir, real_open = os.mkdir, os.open

    def refuse(path):
        if str(os.path.abspath(path)).startswith(str(ro) + os.sep):
            raise PermissionError(13, "Permission denied", str(path))

    def mkdir(path, *a, **k):
        refuse(path)
        return real_mkdir(path, *a, **k)

    def open_(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_open(path, flags, *a, **k)

    real_builtin_open = builtins.open

    def builtin_open(file, mode="r", *a, **k):
        if isinstance(file, (str, os.PathLike)) and any(m in mode for m in "wax+"):
            refuse(file)
        return real_builtin_open(file, mode, *a, **k)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(builtins, "open", builtin_open)
    return ro


@pytest.mark.parametrize("command", ["generate", "train", "demo-dataset", "evaluate", "bank"])
def test_a_read_only_output_is_one_line_naming_it(demo, tmp_path, cli, read_only, command):
    data, out = demo / "data", read_only / "out"
    args = {
        "generate": ["generate", data, "--bank", demo / "bank.h5", "--out", out, "--count", "4"],
        "train": ["train", data, "--out", out, "--epochs", "1", "--model", "aff-unet-tiny",
                  "--crop", "32", "--device", "cpu", "--precision", "fp32"],
        "demo-dataset": ["demo-dataset", out, "--images", "2"],
        "evaluate": ["evaluate", data, "--pred-dir", data / "masks", "--json-out",
                     read_only / "m.json"],
        "bank": ["build-noise-bank", data, "--bank", read_only / "b.h5"],
    }[command]  # fmt: skip
    before = tree_hashes(data)
    r = cli(*args, "-q")
    line = one_line(r.err)
    assert r.code in (1, 2) and "not writable (Permission denied)" in line, line
    assert str(read_only) in line and "choose a folder you can write to" in line
    assert "internal error" not in line and tree_hashes(data) == before
    assert not any(read_only.iterdir())  # nothing half-written, no temporary file
