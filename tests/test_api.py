"""The Python API: the documented examples run, imports stay light, the Dataset equals generate."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import demo_with_bank, read_jsonl

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_importing_the_api_imports_neither_torch_nor_matplotlib():
    code = "import sys, sirst_synth, sirst_synth.api, sirst_synth.synthesizer; print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_documented_examples_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "4 True" and out[1] == "4 16"
    assert out[2] == "4"  # one paste sample per training image
    assert out[3] == "4" and "'IoU'" in out[4]
    assert out[5] == "0 000001_syn0_t0_r0 000001:0:0"
    assert out[6] == "(8, 1, 64, 64) torch.float32" and out[7] == "True"


def test_errors_are_value_errors():
    from sirst_synth.errors import DataError, UsageError

    assert issubclass(UsageError, ValueError) and issubclass(DataError, ValueError)
    import sirst_synth.api as ss

    with pytest.raises(ValueError, match="alpha"):
        ss.generate("nowhere", bank="b.h5", out="o", alpha=2.0)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return demo_with_bank(tmp_path_factory.mktemp("api"), images=8, seed=7)


@pytest.mark.slow
def test_synthesizer_and_dataset_equal_generate(src, tmp_path):
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    import sirst_synth.api as ss
    from sirst_synth import Synthesizer
    from sirst_synth.io.files import read_gray, read_mask
    from sirst_synth.torch import SynthDataset

    out = tmp_path / "g"
    ss.generate(src / "data", bank=src / "bank.h5", out=out, seed=4)  # one pass, every target
    rows = read_jsonl(out / "manifest.jsonl")
    dev = {Path(r["image"]).stem: r for r in rows if r["split"] == "development"}
    synth = Synthesizer(src / "bank.h5", seed=4)
    seen = 0
    for r in rows:
        if r["split"] != "original":
            continue
        image, mask = read_gray(out / r["image"]), read_mask(out / r["mask"])
        for smp in synth(image, mask, key=r["source"], epoch=0):
            row = dev[smp.name]
            assert (read_gray(out / row["image"]) == smp.image).all()
            assert (read_mask(out / row["mask"]) == smp.mask).all()
            assert smp.group == row["group"]
            seen += 1
    assert seen == len(dev) > 0
    # the Dataset's epoch 0: the originals and exactly generate's pass-0 samples
    data = SynthDataset(src / "data", src / "bank.h5", seed=4)
    data.set_epoch(0)
    made = {}
    for i in range(len(data)):
        image, mask, group = data[i]
        made.setdefault(group, []).append((image, mask))
    assert len(data) == len(rows) - sum(r["split"] == "test" for r in rows)
    for row in dev.values():
        arrays = made[row["group"]]
        assert any((a == read_gray(out / row["image"])).all() for a, _ in arrays)
    # two loader worker counts give the same batches
    data = SynthDataset(src / "data", src / "bank.h5", seed=4, form="basicirstd", patch_size=32)
    batches = []
    for workers in (0, 2):
        data.set_epoch(1)
        loader = DataLoader(data, batch_sampler=data.group_sampler(4), num_workers=workers)
        batches.append([x.numpy() for x, _ in loader])
    assert len(batches[0]) == len(batches[1])
    assert all(np.array_equal(a, b) for a, b in zip(*batches, strict=True))


@pytest.mark.slow
def test_synthesizer_paste_equals_generate(src, tmp_path):
    import sirst_synth.api as ss
    from sirst_synth import Synthesizer
    from sirst_synth.io.files import read_gray, read_mask
    from sirst_synth.io.samples import split_items
    from sirst_synth.recipe import SynthRecipe

    recipe = SynthRecipe(mode="paste", alpha=0.1, k=(1, 2), where="any", seed=2)
    out = tmp_path / "p"
    ss.generate(src / "data", bank=src / "bank.h5", out=out, recipe=recipe)
    items, _ = split_items(src / "data", "train")
    sources = [(it.stem, read_gray(it.image), read_mask(it.mask)) for it in items]
    synth = Synthesizer(src / "bank.h5", recipe=recipe, sources=sources)
    rows = {Path(r["image"]).stem: r for r in read_jsonl(out / "manifest.jsonl")}
    for stem, image, mask in sources:
        (smp,) = synth(image, mask, key=stem, epoch=0)
        row = rows[smp.name]
        assert smp.group == row["group"]
        assert (read_gray(out / row["image"]) == smp.image).all()
        assert (read_mask(out / row["mask"]) == smp.mask).all()
