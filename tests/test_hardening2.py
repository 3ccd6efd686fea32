"""Hardening, second round: training that has gone wrong stops and says so; values that make
no sense are refused before work starts; JSON output is always valid JSON."""

import json

import pytest
from conftest import demo_with_bank, one_line

torch = pytest.importorskip("torch")

TINY = ["--model", "aff-unet-tiny", "--crop", "32", "--batch-size", "4", "--device", "cpu",
        "--precision", "fp32", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_with_bank(tmp_path_factory.mktemp("hard2"), images=6, seed=5)


def test_a_diverged_run_stops_and_saves_no_best(demo, tmp_path, cli):
    out = tmp_path / "run"
    r = cli("train", demo / "data", "--out", out, "--lr", "1e38", "--epochs", "2", *TINY)
    assert r.code == 1
    line = one_line(r.err)
    # step 1's loss is computed before the first update: step 2's loss is the first NaN
    assert "training diverged" in line and "step 2" in line and "lower --lr" in line
    assert not (out / "best.pt").exists()  # epoch 1 (1 step) was finite and saved as last.pt
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1


def test_a_diverged_steps_run_stops_at_its_first_validation(demo, tmp_path, cli):
    out = tmp_path / "run"
    r = cli("train", demo / "data", "--out", out, "--lr", "1e38", "--steps", "4",
            "--eval-every-steps", "2", *TINY)  # fmt: skip
    assert r.code == 1 and "training diverged" in one_line(r.err)
    # validation at step 1 (25% of 4) came before the divergence; nothing after it was saved
    assert torch.load(out / "best.pt", weights_only=True)["step"] == 1


@pytest.mark.parametrize(
    "args, words",
    [
        (["--loader-workers", "-1"], "--loader-workers"),
        (["--stop-after", "0"], "--stop-after"),
        (["--eval-every-steps", "5"], "eval_every_steps"),
        (["--crop", "16"], "--crop"),
        (["--pos-prob", "1.5"], "--pos-prob"),
    ],
)
def test_senseless_train_values_are_refused_before_work(demo, tmp_path, cli, args, words):
    out = tmp_path / "run"
    r = cli("train", demo / "data", "--out", out, "--epochs", "1", *TINY, *args)
    assert r.code == 2 and words in r.err, r.err
    assert not out.exists()


def test_preview_targets_must_be_positive(demo, tmp_path, cli):
    r = cli("preview", demo / "data", "--sheet", tmp_path / "p.png", "--targets", "-1")
    assert r.code == 2 and "--targets" in r.err and not (tmp_path / "p.png").exists()


def test_json_output_never_holds_nan():
    from sirst_synth.cli.ui import _finite

    text = json.dumps(
        _finite({"a": float("nan"), "b": [1.0, float("inf")], "c": 2}), allow_nan=False
    )
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": 2}


def test_train_refuses_a_folder_holding_run_files(demo, tmp_path, cli):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"mine")
    (out / "metrics.jsonl").write_text("mine\n")
    r = cli("train", demo / "data", "--out", out, "--epochs", "1", *TINY)
    assert r.code == 2 and "best.pt, metrics.jsonl" in one_line(r.err)
    assert (out / "best.pt").read_bytes() == b"mine" and (
        out / "metrics.jsonl"
    ).read_text() == "mine\n"


def test_a_second_train_into_a_locked_folder_stops(demo, tmp_path, cli):
    from sirst_synth.io.outdir import locked

    out = tmp_path / "run"
    with locked(out, "train"):
        r = cli("train", demo / "data", "--out", out, "--epochs", "1", *TINY)
    assert r.code == 1 and "another sirst-synth train" in one_line(r.err)
    assert not (out / "last.pt").exists()


def test_a_refused_train_leaves_no_empty_folder(demo, tmp_path, cli):
    out = tmp_path / "new-run"
    r = cli("train", demo / "data", "--out", out, "--resume", "--epochs", "1", *TINY)
    assert r.code == 2 and not out.exists()


def test_json_out_is_never_another_output_or_a_link(demo, tmp_path, cli):
    run = tmp_path / "run"
    r = cli("train", demo / "data", "--out", run, "--epochs", "1", *TINY,
            "--json-out", run / "last.pt")  # fmt: skip
    assert r.code == 2 and "also written by --out" in one_line(r.err) and not run.exists()
    gen = tmp_path / "gen"
    r = cli("generate", demo / "data", "--bank", demo / "bank.h5", "--out", gen, "-q",
            "--json-out", gen / "manifest.jsonl")  # fmt: skip
    assert r.code == 2 and "also written by --out" in one_line(r.err) and not gen.exists()
    same = tmp_path / "x.png"
    r = cli("evaluate", demo / "data", "--pred-dir", demo / "data" / "masks", "--curve", same,
            "--json-out", same, "-q")  # fmt: skip
    assert r.code == 2 and "also written by" in one_line(r.err) and not same.exists()
    target = tmp_path / "real.json"
    target.write_text("mine")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    r = cli("evaluate", demo / "data", "--pred-dir", demo / "data" / "masks", "--json-out", link,
            "--overwrite", "-q")  # fmt: skip
    assert r.code == 2 and "symbolic link" in one_line(r.err)
    assert link.is_symlink() and target.read_text() == "mine"


def test_two_files_for_one_stem_are_refused_with_both_names(tmp_path, cli):
    import shutil

    import cv2
    import numpy as np

    from sirst_synth.io.demo_writer import write_demo_dataset

    root = tmp_path / "d"
    write_demo_dataset(root, images=4, seed=1)
    first = sorted((root / "images").iterdir())[0]
    cv2.imwrite(str(first.with_suffix(".bmp")), np.zeros((8, 8), np.uint8))
    r = cli("build-noise-bank", root, "--bank", tmp_path / "b.h5")
    line = one_line(r.err)
    assert r.code == 1 and first.name in line and first.with_suffix(".bmp").name in line
    first.with_suffix(".bmp").unlink()
    mask = sorted((root / "masks").iterdir())[0]
    shutil.copy(mask, mask.with_name(mask.stem + "_pixels0.png"))
    r = cli("build-noise-bank", root, "--bank", tmp_path / "b.h5")
    assert r.code == 1 and "_pixels0.png" in one_line(r.err) and mask.name in r.err


def test_a_checkpoint_with_a_nan_normalisation_is_refused(demo, tmp_path, cli):
    from sirst_synth.train.checkpoint import save_checkpoint, weights_state
    from sirst_synth.train.model import build_model

    ckpt = tmp_path / "nan.pt"
    state = weights_state(
        "aff-unet-tiny", build_model("aff-unet-tiny").state_dict(), float("nan"), 0.2
    )
    save_checkpoint(ckpt, state)
    r = cli("evaluate", demo / "data", "--checkpoint", ckpt, "--device", "cpu", "-q")
    assert r.code == 1 and "normalisation" in one_line(r.err)


def test_resume_on_other_training_data_is_refused(demo, tmp_path, cli):
    from sirst_synth.io.demo_writer import write_demo_dataset

    other = tmp_path / "other"
    write_demo_dataset(other, images=6, seed=9)
    out = tmp_path / "run"
    r = cli("train", demo / "data", "--out", out, "--epochs", "2", "--stop-after", "1", *TINY)
    assert r.code == 0, r.err
    r = cli("train", other, "--out", out, "--epochs", "2", "--resume", *TINY)
    assert r.code == 2 and "other training files" in one_line(r.err)
    r = cli("train", demo / "data", "--out", out, "--epochs", "2", "--resume", *TINY)
    assert r.code == 0, r.err


def test_verify_during_or_after_a_stopped_generate_says_so(demo, tmp_path, cli):
    out = tmp_path / "gen"
    (out / ".sirst-synth").mkdir(parents=True)
    (out / ".sirst-synth" / "journal.jsonl").write_text("")
    r = cli("verify", out, "-q")
    assert r.code == 1 and "generate is writing it" in one_line(r.err) and "--resume" in r.err
