"""The study command, train --steps, and the learning-rate schedule."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import demo_with_bank, read_jsonl, tree_hashes

from sirst_synth.errors import UsageError
from sirst_synth.io.demo_writer import write_demo_dataset
from sirst_synth.recipe import TrainRecipe
from sirst_synth.train.schedule import cosine_lr

torch = pytest.importorskip("torch")


def test_cosine_lr_by_hand():
    assert cosine_lr(0.05, 0, 4) == 0.05
    assert cosine_lr(0.05, 2, 4) == pytest.approx(0.025)
    assert cosine_lr(0.05, 1, 4) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)) / 2)
    assert cosine_lr(0.05, 4, 4) == pytest.approx(0.0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_with_bank(tmp_path_factory.mktemp("study"), images=8, seed=3)


TINY = ["--model", "aff-unet-tiny", "--crop", "32", "--batch-size", "2", "--device", "cpu", "-q",
        "--precision", "fp32"]  # fmt: skip


@pytest.mark.slow
def test_resume_with_more_epochs_continues_the_cosine_down(demo, tmp_path, cli):
    """Train 2 epochs, resume to 4: the rates are the 4-epoch curve from epoch 2 on (falling),
    not a restarted one."""
    data = demo / "data"
    assert cli("train", data, "--out", tmp_path / "r", "--epochs", "2", *TINY).code == 0
    r = cli("train", data, "--out", tmp_path / "r", "--epochs", "4", "--resume", *TINY)
    assert r.code == 0, r.err
    lrs = [m["lr"] for m in read_jsonl(tmp_path / "r" / "metrics.jsonl") if "lr" in m]
    assert lrs == pytest.approx([0.05, cosine_lr(0.05, 1, 2), 0.025, cosine_lr(0.05, 3, 4)])


@pytest.mark.slow
def test_steps_are_exact_whatever_the_data_size(demo, tmp_path):
    """--steps N takes N optimiser steps on 6 and on 30 training images alike."""
    from sirst_synth.train.loop import train

    small = demo / "data"
    big = tmp_path / "big"
    write_demo_dataset(big, images=36, seed=4)
    recipe = TrainRecipe(
        model="aff-unet-tiny", batch_size=4, crop=32, steps=7, eval_every_steps=3, neg_loss="off"
    )
    calls = {"n": 0}
    import sirst_synth.train.loop as loop

    real = loop.train_step

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    loop.train_step = counting
    try:
        for i, data in enumerate((small, big)):
            calls["n"] = 0
            res = train(data, tmp_path / f"run{i}", recipe, "cpu", "fp32")
            assert res.steps == 7 and calls["n"] == 7
            rows = read_jsonl(tmp_path / f"run{i}" / "metrics.jsonl")
            # every 3 steps, and at 25, 50, 75 and 100% of the 7 (steps 2, 4, 6, 7)
            assert [r["step"] for r in rows if "IoU" in r] == [2, 3, 4, 6, 7]
            assert torch.load(tmp_path / f"run{i}" / "last.pt", weights_only=True)["step"] == 7
    finally:
        loop.train_step = real


def _study(cli, demo, out, *extra, recipe="study-smoke"):
    return cli(
        "study",
        demo / "data",
        "--bank",
        demo / "bank.h5",
        "--out",
        out,
        "--recipe",
        recipe,
        "--device",
        "cpu",
        "-q",
        *extra,
    )


@pytest.mark.slow
def test_smoke_study_end_to_end(demo, tmp_path, cli):
    before = tree_hashes(demo / "data")
    out = tmp_path / "st"
    r = _study(cli, demo, out)
    assert r.code == 0, r.err
    assert tree_hashes(demo / "data") == before  # the dataset is never written
    res = json.loads((out / "results.json").read_text())
    assert [(x["arm"], x["seed"], x["steps"]) for x in res["runs"]] == [
        ("baseline", 0, 8),
        ("sirst5k", 0, 8),
        ("baseline-half", 0, 8),
    ]
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("arm,seed,steps,IoU,nIoU,Pd,Fa,collapsed,wall_s")
    assert len(csv_lines) == 4
    md = (out / "results.md").read_text()
    assert md.startswith("## Verdicts against `baseline`")
    assert "| sirst5k |" in md and "92.78" in md and "best-val model" in md
    assert "too few seeds to tell" in md  # one seed: no interval, no verdict
    assert "baseline-half (exploratory)" in md
    for png in ("iou_vs_step.png", "seeds.png", "differences.png", "pdfa.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # training on the carved training split, validating on the held-out share, never the test
    ident = yaml.safe_load((out / "study.yaml").read_text())
    assert ident["data"]["name"] == "data" and len(ident["data"]["fingerprint"]) == 64
    assert str(tmp_path) not in (out / "study.yaml").read_text()  # no machine path recorded
    assert ident["splits"] == {"train": 3, "val": 1, "how": "carved: a seeded 0.2 of train.txt"}
    view = out / "views" / "full" / "50_50"
    train, val = ((view / n).read_text().split() for n in ("train.txt", "test.txt"))
    test = (demo / "data" / "50_50" / "test.txt").read_text().split()
    assert len(train) == 3 and len(val) == 1 and not set(train + val) & set(test)
    half = (out / "views" / "f0.5-seed0" / "50_50" / "train.txt").read_text().split()
    assert len(half) == 2 and set(half) < set(train)  # round(0.5 * 3) = 2
    # validation at 25, 50, 75, 100% of the 8 steps (every 4 as well)
    hist = [x for x in res["runs"] if x["arm"] == "baseline"][0]["history"]
    assert [h["step"] for h in hist] == [2, 4, 6, 8]
    # the sirst5k arm trained on generated data with L_Neg groups of 4, from the view only
    data_ref = json.loads((out / "runs" / "sirst5k" / "seed0" / "data.json").read_text())["data"]
    assert data_ref == "data/sirst5k-a0.1-s3-full-seed0"
    rows = read_jsonl(out / data_ref / "manifest.jsonl")
    assert {r["source"] for r in rows if r["split"] == "development"} <= set(train)
    env = [x for x in res["runs"] if x["arm"] == "baseline"][0]["env"]
    assert env["precision"] == "fp32" and env["torch"] == torch.__version__
    # one batch-norm kernel, chosen once for the study, ran every run
    chosen = json.loads((out / "precision.json").read_text())["narrow_bn"]
    for arm in ("baseline", "sirst5k", "baseline-half"):
        ckpt = torch.load(out / "runs" / arm / "seed0" / "train" / "last.pt", weights_only=True)
        assert ckpt["narrow_bn"] == chosen, arm
    assert env["narrow_bn"] == chosen and "| narrow batch norm |" in md
    # the study's numbers are those of a separate evaluate of the same final checkpoint
    for run in res["runs"]:
        e = cli(
            "evaluate",
            demo / "data",
            "--checkpoint",
            out / run["checkpoint"],
            "--device",
            "cpu",
            "--json",
        )
        assert e.code == 0, e.err
        m = json.loads(e.out)
        for k in ("IoU", "nIoU", "Pd", "Fa"):
            assert m[k] == run[k], k
    # a second study into the same folder needs --resume; seeds may be added
    r = _study(cli, demo, out)
    assert r.code == 2 and "--resume" in r.err
    kept = tree_hashes(out / "runs")
    r = _study(cli, demo, out, "--resume", "--seeds", "2")
    assert r.code == 0, r.err
    res = json.loads((out / "results.json").read_text())
    assert [(x["arm"], x["seed"]) for x in res["runs"]][3:] == [
        ("baseline", 1),
        ("sirst5k", 1),
        ("baseline-half", 1),
    ]
    assert {k: v for k, v in tree_hashes(out / "runs").items() if k in kept} == kept


@pytest.mark.slow
def test_study_resume_after_a_kill_keeps_finished_runs(demo, tmp_path, cli):
    out = tmp_path / "st"
    cmd = [
        sys.executable,
        "-m",
        "sirst_synth",
        "study",
        str(demo / "data"),
        "--bank",
        str(demo / "bank.h5"),
        "--out",
        str(out),
        "--recipe",
        "study-smoke",
        "--device",
        "cpu",
        "-q",
    ]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONHASHSEED": "0"})
    first = out / "runs" / "baseline" / "seed0" / "done.json"
    deadline = time.time() + 300
    while not first.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.is_file()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()
    kept = tree_hashes(out / "runs" / "baseline")
    # the next run as a kill in its first epoch leaves it: a log, no checkpoint yet
    begun = out / "runs" / "sirst5k" / "seed0" / "train"
    begun.mkdir(parents=True, exist_ok=True)
    (begun / "last.pt").unlink(missing_ok=True)
    (begun / "metrics.jsonl").write_text("")
    r = _study(cli, demo, out, "--resume")
    assert r.code == 0, r.err
    assert tree_hashes(out / "runs" / "baseline") == kept
    res = json.loads((out / "results.json").read_text())
    assert [x["arm"] for x in res["runs"]] == ["baseline", "sirst5k", "baseline-half"]


def test_study_recipe_errors(tmp_path, cli, demo):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "seeds: 1\ntrain: {steps: 5}\narms:\n  a: {data: original, train: {steps: 6}}\n  b: {data: n2n}\n"
    )
    r = cli(
        "study", demo / "data", "--bank", demo / "bank.h5", "--out", tmp_path / "o", "--recipe", bad
    )
    assert r.code == 2 and "same steps" in r.err
    bad.write_text("arms:\n  a: {data: original}\n")
    r = cli(
        "study", demo / "data", "--bank", demo / "bank.h5", "--out", tmp_path / "o", "--recipe", bad
    )
    assert r.code == 2 and "train.steps is required" in r.err
    bad.write_text("train: {steps: 5}\narms:\n  a: {data: original, train: {neg_loss: off}}\n")
    r = cli(
        "study", demo / "data", "--bank", demo / "bank.h5", "--out", tmp_path / "o", "--recipe", bad
    )
    assert r.code == 2 and "neg_loss" in r.err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_an_arm_added_on_resume_runs_alone(demo, tmp_path, cli):
    """A study extended by an arm (here the online one) keeps its finished runs as they are."""
    from sirst_synth.recipes import recipe_path

    out = tmp_path / "st"
    assert _study(cli, demo, out).code == 0
    kept = tree_hashes(out / "runs")
    more = tmp_path / "more.yaml"
    more.write_text(
        recipe_path("study-smoke").read_text()
        + "  online: {data: online, train: {neg_loss: sum}}\n"
        + "  paste: {data: paste, synth: {alpha: 0.0, where: any}, train: {neg_loss: 'off'}}\n"
    )
    r = _study(cli, demo, out, "--resume", recipe=more)
    assert r.code == 0, r.err
    now = tree_hashes(out / "runs")
    assert {k: v for k, v in now.items() if k in kept} == kept
    res = json.loads((out / "results.json").read_text())
    arms = ["baseline", "sirst5k", "baseline-half", "online", "paste"]
    assert [x["arm"] for x in res["runs"]] == arms
    online = [x for x in res["runs"] if x["arm"] == "online"][0]
    assert online["steps"] == 8 and not any(
        p.name.startswith("online") for p in (out / "data").iterdir()
    )
    # the paste arm: as many samples as the sirst5k set of the same view and seed
    ref = read_jsonl(out / "data" / "sirst5k-a0.1-s3-full-seed0" / "manifest.jsonl")
    (paste,) = [p for p in (out / "data").iterdir() if p.name.startswith("paste-")]
    rows = read_jsonl(paste / "manifest.jsonl")
    dev = [r for r in rows if r["split"] == "development"]
    assert len(dev) == sum(r["split"] == "development" for r in ref)
    assert all(r["image"].endswith("_paste.png") for r in dev)
    # what ran before may not change
    more.write_text(recipe_path("study-smoke").read_text().replace("steps: 8", "steps: 12"))
    r = _study(cli, demo, out, "--resume", recipe=more)
    assert r.code == 2 and "steps: was 8, now 12" in r.err


def test_shuffled_batches_need_neg_loss_off_and_mix_groups():
    """group_batches false: every sample is its own group for the sampler, so batches mix
    targets; with L_Neg on it is refused (L_Neg compares a target's rotations in one batch)."""
    from sirst_synth.errors import UsageError
    from sirst_synth.recipe import TrainRecipe
    from sirst_synth.train.data import GroupBatchSampler, batch_groups

    with pytest.raises(UsageError, match="group_batches"):
        TrainRecipe(group_batches=False)  # neg_loss defaults to sum
    TrainRecipe(group_batches=False, neg_loss="off")
    groups = [g for g in "abcd" for _ in range(4)]  # 4 targets x 4 rotations
    grouped = GroupBatchSampler(batch_groups(groups, True), 4, seed=0).batches()
    assert sorted(map(sorted, grouped)) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9, 10, 11],
        [12, 13, 14, 15],
    ]
    mixed = GroupBatchSampler(batch_groups(groups, False), 4, seed=0).batches()
    assert sorted(i for b in mixed for i in b) == list(range(16))
    assert all(len(b) == 4 for b in mixed)
    assert max(len({groups[i] for i in b}) for b in mixed) > 1


def test_a_study_written_before_a_new_recipe_field_resumes(demo, tmp_path):
    """study.yaml of an older version lacks group_batches: its runs used the default, so the
    study resumes; a recorded value other than the default is a change and is refused."""
    from sirst_synth.recipes import recipe_path

    from sirst_synth.errors import UsageError
    from sirst_synth.study import STUDY_FILE, check_study_out, load_study_recipe

    recipe = load_study_recipe(recipe_path("study-smoke").read_text(), "study-smoke")
    identity = {"tool": "sirst-synth study", **recipe.to_dict()}
    out = tmp_path / "st"
    out.mkdir()
    old = yaml.safe_load(yaml.safe_dump(identity))
    for arm in old["arms"].values():
        del arm["train"]["group_batches"]
    (out / STUDY_FILE).write_text(yaml.safe_dump(old, sort_keys=False))
    check_study_out(out, demo / "data", demo / "bank.h5", identity, resume=True)
    old["arms"]["baseline"]["train"]["group_batches"] = False
    (out / STUDY_FILE).write_text(yaml.safe_dump(old, sort_keys=False))
    with pytest.raises(UsageError, match="group_batches: was False, now True"):
        check_study_out(out, demo / "data", demo / "bank.h5", identity, resume=True)


SHIPPED = [
    "sirst5k",
    "train",
    "demo-train",
    "basicirstd",
    "study-cpu",
    "study-cpu-6000",
    "study-paper",
    "study-smoke",
    "study-length",
    "study-length-12000",
    "study-shuffle",
    "study-paste-tune",
]


def test_the_shipped_recipes_are_all_listed_here():
    from sirst_synth.recipes import recipe_names

    assert sorted(SHIPPED) == recipe_names()


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_recipe_loads(name):
    """Through the loader its command uses (a value type the loader cannot read, like a YAML
    boolean once, fails here rather than at the start of an hour-long study)."""
    from sirst_synth.recipes import recipe_names, recipe_path

    from sirst_synth.recipe import SynthRecipe, TrainRecipe, load_recipe
    from sirst_synth.study import load_study_recipe
    from sirst_synth.study.runner import run_order

    assert name in recipe_names()
    text = recipe_path(name).read_text()
    if name.startswith("study-"):
        recipe = load_study_recipe(text, name)
        assert recipe.arms
        if name == "study-cpu-6000":
            arms = {a.name: a for a in recipe.arms}
            assert {a.train.steps for a in recipe.arms} == {6000} and recipe.seeds == 6
            assert (arms["paste"].synth.k, arms["paste"].synth.scale) == ((1, 1), (1.0, 1.0))
            assert arms["paste"].synth.alpha == 0.0 and arms["paste-n2n"].synth.alpha == 0.1
            assert recipe.threads == 1  # run with --jobs 2 on 2 cores
            quarter = {a.name: a.exploratory for a in recipe.arms if a.train_fraction == 0.25}
            assert quarter == {
                "reference-quarter": False, "paste-quarter": False, "paste-n2n-quarter": True
            }  # fmt: skip
            assert arms["paste-quarter"].synth == arms["paste"].synth
            shuffled, noneg = arms["sirst5k-shuffled"], arms["sirst5k-noneg"]
            assert (shuffled.data, shuffled.train.neg_loss, shuffled.exploratory) == (
                "sirst5k", "off", True
            )  # fmt: skip
            assert (shuffled.train.group_batches, noneg.train.group_batches) == (False, True)
            assert len(run_order(recipe)) == 6 * 6 + 6 * 3
        if name == "study-cpu":
            arms = {a.name: a for a in recipe.arms}
            assert recipe.reference == "reference" and recipe.seeds == 6
            assert arms["reference"].train.pos_prob == 0.5
            assert arms["reference"].train.augment == "flips"
            assert arms["plain"].train.augment == "none" and arms["plain"].train.pos_prob == 0
            assert arms["reference-quarter"].train_fraction == 0.25
            assert recipe.seeds_of(arms["n2n"]) == 3 and recipe.seeds_of(arms["sirst5k"]) == 6
    else:
        load_recipe(SynthRecipe if name == "sirst5k" else TrainRecipe, text, name, {})


def test_a_boolean_recipe_key_takes_only_true_or_false(tmp_path):
    from sirst_synth.errors import UsageError
    from sirst_synth.recipe import TrainRecipe, load_recipe

    r = load_recipe(TrainRecipe, "neg_loss: 'off'\ngroup_batches: false\n", "r.yaml", {})
    assert r.group_batches is False
    with pytest.raises(UsageError, match=r"'group_batches'\) must be true or false, got 'no'"):
        load_recipe(TrainRecipe, "neg_loss: 'off'\ngroup_batches: 'no'\n", "r.yaml", {})
    with pytest.raises(
        UsageError, match=r"r.yaml: --lr \(recipe key 'lr'\) must be a number, got True"
    ):
        load_recipe(TrainRecipe, "lr: true\n", "r.yaml", {})


def test_core_arms_run_seed_by_seed_before_exploratory_arms():
    """Stopped anywhere, a study holds every core arm at equal seeds before any side question."""
    from sirst_synth.recipes import recipe_path

    from sirst_synth.study import load_study_recipe
    from sirst_synth.study.runner import run_order

    recipe = load_study_recipe(recipe_path("study-cpu").read_text(), "study-cpu")
    order = [(arm.name, seed) for arm, seed in run_order(recipe)]
    core = ["reference", "plain", "sirst5k", "reference-quarter", "paste", "paste-quarter"]
    assert order[:7] == [(a, 0) for a in core] + [("reference", 1)]
    assert order[35] == ("paste-quarter", 5) and order[36] == ("n2n", 0)
    assert len(order) == 6 * 6 + 4 * 3 and len(set(order)) == len(order)


def test_a_study_chooses_its_batch_norm_kernel_once(tmp_path, monkeypatch):
    from sirst_synth.study import runner
    from sirst_synth.train import device

    probes = []
    monkeypatch.setattr(device, "probe_narrow_bn", lambda bf16: probes.append(bf16) or "compiled")
    resolve = lambda requested, dev: ("fp32", "asked for")  # noqa: E731
    cpu = torch.device("cpu")
    assert runner._study_precision(tmp_path, "fp32", cpu, resolve) == ("fp32", "compiled")
    assert runner._study_precision(tmp_path, "fp32", cpu, resolve) == ("fp32", "compiled")
    assert probes == [False]  # recorded: not measured again on resume
    # a study recorded before the kernel was chosen keeps the fixed one its runs used
    old = tmp_path / "old"
    old.mkdir()
    (old / "precision.json").write_text('{"precision": "fp32", "why": "asked for"}\n')
    assert runner._study_precision(old, "fp32", cpu, resolve) == ("fp32", "contiguous")
    # models without narrow batch norm: nothing to measure
    wide = tmp_path / "wide"
    wide.mkdir()
    assert runner._study_precision(wide, "fp32", cpu, resolve, False) == ("fp32", "contiguous")
    assert probes == [False]


@pytest.mark.slow
def test_runs_in_parallel_give_the_runs_of_one_process(demo, tmp_path, cli, monkeypatch):
    from sirst_synth import api
    from sirst_synth.train import device

    # the tests compile nothing: the spawned workers would not see conftest's stand-in
    monkeypatch.setattr(device, "probe_narrow_bn", lambda bf16: "contiguous")
    one, two = tmp_path / "one", tmp_path / "two"
    assert _study(cli, demo, one).code == 0
    lines: list[str] = []
    api.study(demo / "data", out=two, recipe="study-smoke", bank=demo / "bank.h5", jobs=2,
              device="cpu", log=lines.append)  # fmt: skip
    order = [(x["arm"], x["seed"]) for x in json.loads((one / "results.json").read_text())["runs"]]
    assert [
        (x["arm"], x["seed"]) for x in json.loads((two / "results.json").read_text())["runs"]
    ] == (order)
    for arm, seed in order:
        done = [
            json.loads((d / "runs" / arm / f"seed{seed}" / "done.json").read_text())
            for d in (one, two)
        ]
        assert done[0].pop("wall_s") > 0 and done[1].pop("wall_s") > 0
        assert done[0] == done[1]  # scores, validation history, Pd-Fa curve, extra tests, env
        assert done[0]["history"] and done[0]["curve"]
        val, test = (f"{100 * x:.2f}" for x in (done[0]["history"][-1]["IoU"], done[0]["IoU"]))
        said = f"final model IoU x100 {val} (validation), {test} (test)"
        assert sum(f"{arm} seed {seed} done in" in x and said in x for x in lines) == 1
        ckpts = [
            torch.load(d / done[0]["checkpoint"], weights_only=True)["model"] for d in (one, two)
        ]
        assert all(torch.equal(ckpts[0][k], ckpts[1][k]) for k in ckpts[0])
    assert (one / "results.md").read_text().split("## Where")[0] == (
        (two / "results.md").read_text().split("## Where")[0]
    )


def test_study_jobs_must_be_a_whole_number_of_at_least_one(demo, tmp_path, cli):
    from sirst_synth import api

    r = _study(cli, demo, tmp_path / "st", "--jobs", "0")
    assert r.code == 2 and "--jobs" in r.err and "Traceback" not in r.err
    for bad in (0, 1.5, True):
        with pytest.raises(UsageError, match="jobs must be a whole number >= 1"):
            api.study(demo / "data", out=tmp_path / "st2", recipe="study-smoke", jobs=bad)
    assert not (tmp_path / "st").exists() and not (tmp_path / "st2").exists()


@pytest.mark.slow
def test_extra_tests_and_publish_and_a_resume_from_published_files_alone(demo, tmp_path, cli):
    """--extra-test scores every final model on another split file too; --publish keeps every
    finished run's small files (per-image scores included, no checkpoint), and a study on a
    machine without the first one's folder takes those runs as finished: nothing retrains."""
    test = (demo / "data" / "50_50" / "test.txt").read_text().split()
    (tmp_path / "two.txt").write_text("\n".join(test[:2]) + "\n")
    pub = tmp_path / "pub"
    extra = ("--extra-test", f"two={demo / 'data'}:{tmp_path / 'two.txt'}", "--publish", pub)
    r = _study(cli, demo, tmp_path / "st", *extra)
    assert r.code == 0, r.err
    for arm in ("baseline", "sirst5k", "baseline-half"):
        run = pub / "runs" / arm / "seed0"
        assert sorted(p.name for p in run.iterdir()) == [
            "done.json", "eval.json", "metrics.jsonl", "per-image-two.csv", "per-image.csv",
            "recipe.yaml",
        ]  # fmt: skip
        done = json.loads((run / "done.json").read_text())
        assert done["extra"]["two"]["images"] == 2
        rows = (run / "per-image.csv").read_text().splitlines()
        assert rows[0] == "image,IoU,intersection,union,targets,detected,fa_pixels,pixels"
        assert [x.split(",")[0] for x in rows[1:]] == test  # every test image, in split order
        two = (run / "per-image-two.csv").read_text().splitlines()
        assert [x.split(",")[0] for x in two[1:]] == test[:2]
        assert sum(int(x.split(",")[6]) for x in rows[1:]) == done["fa_pixels"]
    assert not list(pub.rglob("*.pt")) and (pub / "results.md").is_file()
    assert "## Extra test: two" in (pub / "results.md").read_text()
    # elsewhere: a new study folder, only the published files; the precision and kernel the
    # runs were made in come along (here edited, to see that the published choice is taken)
    assert (pub / "precision.json").read_text() == (tmp_path / "st" / "precision.json").read_text()
    choice = '{"precision": "fp32", "why": "asked for", "narrow_bn": "contiguous"}\n'
    (pub / "precision.json").write_text(choice)
    r = _study(cli, demo, tmp_path / "st2", "--resume", *extra)
    assert r.code == 0, r.err
    assert (tmp_path / "st2" / "precision.json").read_text() == choice
    assert not list((tmp_path / "st2" / "runs").rglob("*.pt"))  # nothing trained again
    first = json.loads((tmp_path / "st" / "results.json").read_text())["runs"]
    again = json.loads((tmp_path / "st2" / "results.json").read_text())["runs"]
    assert again == first
    assert (tmp_path / "st2" / "runs" / "sirst5k" / "seed0" / "per-image-two.csv").is_file()


def test_an_extra_test_or_bank_that_cannot_be_read_is_refused_before_any_run(demo, tmp_path, cli):
    from conftest import one_line

    data = demo / "data"
    split = tmp_path / "two.txt"
    for extra, code, line in (
        (f"v2={tmp_path / 'none'}", 2,
         f"--extra-test v2: {tmp_path / 'none'}: dataset folder not found; pass a folder with "
         "images/ and masks/"),
        (f"v2={data}:{split}", 1,
         f"--extra-test v2: {split}: split file not found; pass an existing file"),
    ):  # fmt: skip
        r = _study(cli, demo, tmp_path / "st", "--extra-test", extra)
        assert (r.code, one_line(r.err)) == (code, f"error: {line}")
    split.write_text("nothing_here\n")
    r = _study(cli, demo, tmp_path / "st", "--extra-test", f"v2={data}:{split}")
    assert r.code == 1 and "the test split is empty; check the split files" in r.err
    r = _study(cli, demo, tmp_path / "st", "--extra-test", f"a={data}", "--extra-test", f"a={data}")
    assert (r.code, one_line(r.err)) == (
        2, "error: --extra-test a is given twice; give each test set its own NAME"
    )  # fmt: skip
    r = cli("study", data, "--bank", tmp_path / "none.h5", "--out", tmp_path / "st", "-q")
    assert (r.code, one_line(r.err)) == (
        1, f"error: {tmp_path / 'none.h5'}: noise bank not found; run `sirst-synth "
        "build-noise-bank` first",
    )  # fmt: skip
    assert not (tmp_path / "st").exists()  # nothing written, nothing trained


def test_an_extra_test_name_that_cannot_name_a_file_is_refused():
    from sirst_synth.study import ExtraTest

    with pytest.raises(UsageError, match="NAME may hold letters, digits"):
        ExtraTest.parse("a/b=dir")
