"""The HDF5 noise bank: contents equal the source regions, provenance, resume and overwrite."""

import json

import h5py
import numpy as np
from conftest import noise_prone_regions

from sirst_synth import __version__
from sirst_synth.io.bank import BankReader, read_bank_index
from sirst_synth.io.files import read_gray, read_mask
from sirst_synth.io.layouts import open_dataset


def test_bank_holds_exactly_the_noise_prone_regions(demo_root, tmp_path, cli):
    bank = tmp_path / "bank.h5"
    r = cli("build-noise-bank", demo_root, "--bank", bank, "--json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    ds = open_dataset(demo_root)
    expected = 0  # counted from the definition, not by the scan under test
    for stem in ds.train:
        img, mask = read_gray(ds.image_path(stem)), read_mask(ds.mask_path(stem))
        expected += len(noise_prone_regions(img, mask, 8, 50, 255))
    idx = read_bank_index(bank)
    assert idx.size == res["accepted"] == expected
    assert res["regions"] == 64 * len(ds.train) == res["accepted"] + sum(res["rejected"].values())
    assert idx.attrs["sigma"] == 50 and idx.attrs["mu"] == 255 and idx.attrs["grid"] == 8
    assert idx.attrs["tool_version"] == __version__ and len(idx.attrs["fingerprint"]) == 64
    reader = BankReader(idx)
    for i in (0, idx.size // 2, idx.size - 1):
        stem = idx.sources[idx.source[i]]
        img = read_gray(ds.image_path(stem))
        r0, c0 = int(idx.row[i]) * 32, int(idx.col[i]) * 32  # 256 / 8
        region = img[r0 : r0 + 32, c0 : c0 + 32]
        patch = reader.patch(i)
        assert np.array_equal(patch, region)
        assert idx.mean[i] == region.mean() and idx.var[i] == region.astype(np.float64).var()
        assert 0 < idx.var[i] < 50 and 0 < idx.mean[i] < 255
    del reader  # its h5py handle closes with it
    with h5py.File(bank) as f:
        assert f["pixels"].dtype == np.uint8 and f["mean"].dtype == np.float64


def test_bank_resume_overwrite_and_refusals(demo_root, tmp_path, cli):
    bank = tmp_path / "bank.h5"
    assert cli("build-noise-bank", demo_root, "--bank", bank, "-q").code == 0
    before = bank.read_bytes()
    r = cli("build-noise-bank", demo_root, "--bank", bank)
    assert r.code == 2 and "--overwrite" in r.err and "--resume" in r.err
    r = cli("build-noise-bank", demo_root, "--bank", bank, "--resume", "--json")
    assert r.code == 0 and json.loads(r.out)["reused"] is True and bank.read_bytes() == before
    r = cli("build-noise-bank", demo_root, "--bank", bank, "--resume", "--sigma", "80")
    assert r.code == 2 and "cannot resume a different bank (sigma: was 50.0, now 80.0)" in r.err
    r = cli("build-noise-bank", demo_root, "--bank", bank, "--overwrite", "--sigma", "80", "--json")
    assert r.code == 0 and read_bank_index(bank).attrs["sigma"] == 80
    mine = tmp_path / "mine.h5"
    mine.write_text("not a bank")
    r = cli("build-noise-bank", demo_root, "--bank", mine, "--overwrite")
    assert r.code == 2 and mine.read_text() == "not a bank"
    assert not list(tmp_path.glob("*sirst-tmp*"))
