"""`make bench`: speed and memory of sirst-synth, each against a floor measured in the same run.

1. generate on SIRST v1 (../shared/datasets/sirst-v1 or $SIRST_V1_DIR) and on demo data: time,
   images/s, ratio to the I/O floor (decode every source once, encode and write every output once
   with the same codec and PNG level, same number of processes), peak memory of the process tree.
2. build-noise-bank on 663 demo images (NUDT-SIRST's training-set size).
3. metrics on SIRST v1's 427 masks with perturbed predictions: ours vs a skimage label +
   regionprops reference written from the definition; identical numbers in both Fa modes.
4. the whole training path on CPU (``bench/train_speed.py``): images/s, GFLOP/s and the share
   of a same-precision matmul, the reference path against the fast one.
5. the online-synthesis data pipeline (``train --synth online``) with 2 loader workers at the
   same crop (images/s), against the training step it feeds: the ratio must be >= 5.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
# Last: the repository for `bench` itself; an installed sirst_synth (with its compiled
# kernels) comes first, not the source tree beside this file.
sys.path.append(str(REPO))

from bench.memory import peak_memory  # noqa: E402
from bench.reference_metrics import reference_iou, reference_pd_fa  # noqa: E402
from bench.train_speed import bench_train_speed  # noqa: E402
from sirst_synth.bank_build import build_noise_bank  # noqa: E402
from sirst_synth.generate import generate  # noqa: E402
from sirst_synth.io.demo_writer import write_demo_dataset  # noqa: E402
from sirst_synth.io.files import encode_png, read_gray, read_mask  # noqa: E402
from sirst_synth.io.layouts import open_dataset  # noqa: E402
from sirst_synth.io.manifest import read_manifest  # noqa: E402
from sirst_synth.metrics import NATIVE, MetricTotals, score_image  # noqa: E402
from sirst_synth.recipe import SynthRecipe  # noqa: E402

SIRST = Path(os.environ.get("SIRST_V1_DIR", REPO.parent / "shared" / "datasets" / "sirst-v1"))
WORKERS = 2
RESULTS: dict = {}


_FLOOR: dict = {}


def _floor_init(ds, out, scratch, outputs):
    _FLOOR.update(ds=ds, out=out, scratch=scratch, outputs=outputs)


def _floor_job(stem: str) -> int:
    """Decode the source pair once, then encode and write each output of this source. The
    outputs' pixels were read back before the clock started, so the floor encodes exactly the
    same content as generate did."""
    ds, scratch = _FLOOR["ds"], _FLOOR["scratch"]
    read_gray(ds.image_path(stem)), read_mask(ds.mask_path(stem))
    arrays = _FLOOR["outputs"][stem]
    for k, arr in enumerate(arrays):
        (scratch / f"{stem}_{k}.png").write_bytes(encode_png(arr))
    return len(arrays)


def _floor_test(stem: str) -> int:
    ds, scratch = _FLOOR["ds"], _FLOOR["scratch"]
    for p, kind in ((ds.image_path(stem), "ti"), (ds.mask_path(stem), "tm")):
        (scratch / f"{stem}{kind}.png").write_bytes(p.read_bytes())
    return 2


def _floor(root: Path, out: Path, scratch: Path, skip: bool) -> float:
    """Wall seconds of the I/O floor with WORKERS processes."""
    rows = read_manifest(out)
    outputs: dict[str, list[np.ndarray]] = {}
    for r in rows:
        if r.split != "test":
            outputs.setdefault(r.source, []).extend(
                cv2.imread(str(out / rel), cv2.IMREAD_UNCHANGED) for rel in (r.image, r.mask)
            )
    ds = open_dataset(root, skip_errors=skip)
    test = [r.source for r in rows if r.split == "test"]
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    _floor_init(ds, out, scratch, outputs)  # the forked workers share the arrays
    os.sync()
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(WORKERS) as pool:
        n = sum(pool.imap(_floor_job, list(outputs), chunksize=1))
        n += sum(pool.imap(_floor_test, test, chunksize=1))
    elapsed = time.perf_counter() - t0
    assert n == 2 * len(rows)
    _FLOOR.clear()
    return elapsed


def bench_generate(label: str, root: Path, work: Path, skip: bool) -> None:
    bank = work / f"{label}-bank.h5"
    build_noise_bank(root, bank, skip_errors=skip)
    out = work / f"{label}-out"
    scratch = work / f"{label}-floor"
    t_gen = t_floor = float("inf")
    for _ in range(3):  # alternate, best of three: both see a warm read cache
        shutil.rmtree(out, ignore_errors=True)
        os.sync()  # no writeback of an earlier run may land in this one's time
        t0 = time.perf_counter()
        res = generate(root, bank, out, SynthRecipe(), workers=WORKERS, skip_errors=skip)
        t_gen = min(t_gen, time.perf_counter() - t0)
        t_floor = min(t_floor, _floor(root, out, scratch, skip))
    rows = read_manifest(out)
    shutil.rmtree(out)
    cmd = [
        sys.executable,
        "-m",
        "sirst_synth",
        "generate",
        str(root),
        "--bank",
        str(bank),
        "--out",
        str(out),
        "--workers",
        str(WORKERS),
        "-q",
    ] + (["--on-error", "skip"] if skip else [])
    t_sub, peak = peak_memory(cmd)
    RESULTS[f"generate_{label}"] = {
        "images_written": len(rows),
        "development": res.development,
        "seconds": round(t_gen, 2),
        "images_per_s": round(len(rows) / t_gen, 1),
        "floor_seconds": round(t_floor, 2),
        "ratio_to_floor": round(t_gen / t_floor, 2),
        "peak_rss_mb": round(peak / 2**20),
        "cli_seconds": round(t_sub, 2),
    }


def bench_bank(work: Path) -> None:
    root = work / "demo663"
    write_demo_dataset(root, images=1326, seed=3)  # 50/50 split: 663 training images
    build_noise_bank(root, work / "b663.h5")  # warm the file cache
    t0 = time.perf_counter()
    s = build_noise_bank(root, work / "b663.h5", overwrite=True)
    RESULTS["build_noise_bank_663"] = {
        "images": s.images,
        "accepted": s.accepted,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _perturb(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pred = np.zeros_like(mask)
    n, labels = cv2.connectedComponents(mask, connectivity=8)
    for i in range(1, n):
        blob = (labels == i).astype(np.uint8)
        roll = rng.random()
        if roll < 0.15:
            continue  # missed
        if roll < 0.5:
            blob = np.roll(
                blob, tuple(rng.integers(-4, 5, 2)), axis=(0, 1)
            )  # shifted (maybe too far)
        elif roll < 0.7:
            blob = cv2.dilate(blob, np.ones((3, 3), np.uint8))
        pred |= blob
        if rng.random() < 0.3:  # a false alarm with the same area as this target
            h, w = mask.shape
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            ys, xs = np.nonzero(blob)
            if ys.size and np.ptp(ys) < 8 and np.ptp(xs) < 8:
                pred[y + ys - ys.min(), x + xs - xs.min()] = 1
    for _ in range(int(rng.integers(0, 3))):
        h, w = mask.shape
        y, x = rng.integers(0, h - 3), rng.integers(0, w - 3)
        pred[y : y + int(rng.integers(1, 4)), x : x + int(rng.integers(1, 4))] = 1
    return pred


def bench_metrics() -> None:
    masks = sorted((SIRST / "masks").glob("*_pixels0.png"))
    rng = np.random.default_rng(0)
    pairs = []
    for m in masks:
        label = read_mask(m)
        pairs.append((_perturb(label, rng), label))
    t_ours = t_py = t_ref = float("inf")
    for _ in range(3):  # alternate, best of three
        t0 = time.perf_counter()
        totals = MetricTotals()
        for pred, label in pairs:
            totals.add(score_image(pred, label))
        ours = (totals.summary("identity"), totals.summary("dnanet"))
        t_ours = min(t_ours, time.perf_counter() - t0)
        t0 = time.perf_counter()
        py = MetricTotals()
        for pred, label in pairs:
            py.add(score_image(pred, label, native=False))
        t_py = min(t_py, time.perf_counter() - t0)
        assert py.scores == totals.scores
        t0 = time.perf_counter()
        iou = reference_iou(pairs)
        t_iou = time.perf_counter() - t0
        pdfa = reference_pd_fa(pairs)
        t_pdfa = time.perf_counter() - t0 - t_iou
        if t_iou + t_pdfa < t_ref:
            t_ref, t_ref_iou, t_ref_pdfa = t_iou + t_pdfa, t_iou, t_pdfa
    ref = ({**iou, **pdfa[0]}, {**iou, **pdfa[1]})
    same = all(
        abs(ours[k][key] - ref[k][key]) < 1e-12
        for k in (0, 1)
        for key in ("IoU", "nIoU", "Pd", "Fa")
    )
    RESULTS["metrics_sirst_v1"] = {
        "masks": len(pairs),
        "native_kernel": NATIVE is not None,
        "ours_s": round(t_ours, 4),
        "ours_python_path_s": round(t_py, 4),
        "reference_s": round(t_ref, 3),
        "reference_iou_s": round(t_ref_iou, 3),
        "reference_pd_fa_s": round(t_ref_pdfa, 3),
        "speedup": round(t_ref / t_ours, 1),
        "speedup_python_path": round(t_ref / t_py, 1),
        "identical_both_fa_modes": same,
        "Fa_identity_x1e6": round(ours[0]["Fa"] * 1e6, 3),
        "Fa_dnanet_x1e6": round(ours[1]["Fa"] * 1e6, 3),
        "Pd": round(ours[0]["Pd"], 4),
    }


def bench_online_pipeline(root: Path, work: Path) -> None:
    """train --synth online's data path (decode, noise draw, blend, rotate, crop, normalise)
    through the DataLoader with 2 workers, against the fp32 training step it feeds."""
    import torch
    from torch.utils.data import DataLoader

    from sirst_synth.io.bank import read_bank_index
    from sirst_synth.io.samples import split_items, target_counts
    from sirst_synth.train.data import GroupBatchSampler, OnlineSynthSet

    bank_path = work / "online_bank.h5"
    build_noise_bank(root, bank_path, skip_errors=True)
    items, _ = split_items(root, "train", skip_errors=True)
    counts = target_counts(items)
    ds = OnlineSynthSet(items, read_bank_index(bank_path), SynthRecipe(), 0.3, 0.2, 256, 0, counts)
    sampler = GroupBatchSampler(ds.groups(), 8, 0)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=WORKERS)
    n, t0 = 0, time.perf_counter()
    for x, _, _ in loader:
        n += x.shape[0]
    rate = n / (time.perf_counter() - t0)
    cores = len(os.sched_getaffinity(0))
    fast = [v for k, v in RESULTS.items() if k.startswith("train_path_") and v.get("crop") == 256]
    step = max(v["fast_images_per_s"] for v in fast)  # the fastest precision it would feed
    RESULTS["online_synthesis_pipeline"] = {
        "dataset": root.name,
        "samples": n,
        "workers": WORKERS,
        "crop": 256,
        "images_per_s": round(rate, 1),
        "training_step_images_per_s": step,
        "ratio": round(rate / step, 1),
    }
    torch.set_num_threads(cores)


def bench_tiled_inference(work: Path) -> None:
    """evaluate --checkpoint on one 4000 x 3000 image: peak memory and time, whole image
    (--tile 0) against the default tiles (same output, tested in tests/test_tiles.py)."""
    import torch

    from sirst_synth.train.checkpoint import save_checkpoint, weights_state
    from sirst_synth.train.model import build_model

    root = work / "large"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "50_50").mkdir()
    rng = np.random.default_rng(0)
    image = rng.normal(90, 6, (3000, 4000)).clip(0, 255).astype(np.uint8)
    mask = np.zeros_like(image)
    mask[1500:1504, 2000:2004], image[1500:1504, 2000:2004] = 255, 250
    cv2.imwrite(str(root / "images" / "large.png"), image)
    cv2.imwrite(str(root / "masks" / "large.png"), mask)
    (root / "50_50" / "test.txt").write_text("large\n")
    (root / "50_50" / "train.txt").write_text("")
    torch.manual_seed(0)
    ckpt = work / "large.pt"
    weights = build_model("aff-unet-tiny").state_dict()
    save_checkpoint(ckpt, weights_state("aff-unet-tiny", weights, 0.35, 0.03))
    cmd = [sys.executable, "-m", "sirst_synth", "evaluate", str(root), "--checkpoint", str(ckpt)]
    for label, extra in (("whole", ["--tile", "0"]), ("tiles_1024", [])):
        seconds, peak = peak_memory([*cmd, *extra, "--device", "cpu", "-q"])
        RESULTS[f"evaluate_4000x3000_tiny_{label}"] = {
            "seconds": round(seconds, 1),
            "peak_rss_gb": round(peak / 1e9, 2),
        }


def main() -> None:
    # Outputs go to a RAM-backed folder where there is one: on a VM disk, writeback and discard
    # of earlier runs make the same run vary by +-40%, which would swamp the ratio measured.
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(
        dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    ) as tmp:
        work = Path(tmp)
        write_demo_dataset(work / "demo", images=400, seed=0)
        bench_generate("demo400", work / "demo", work, skip=False)
        if (SIRST / "images").is_dir():
            bench_generate("sirst_v1", SIRST, work, skip=True)  # one test mask has another size
            bench_metrics()
        else:
            print(f"SIRST v1 not found at {SIRST}: skipping its benchmarks")
        bench_bank(work)
        bench_train_speed(RESULTS)
        bench_online_pipeline(SIRST if (SIRST / "images").is_dir() else work / "demo", work)
        bench_tiled_inference(work)
    RESULTS["output_folder"] = {"tmpfs": str(shm) in tmp}
    print(json.dumps(RESULTS, indent=1))
    from rich.console import Console
    from rich.table import Table

    t = Table(title="sirst-synth benchmarks")
    t.add_column("benchmark")
    t.add_column("result")
    for k, v in RESULTS.items():
        t.add_row(k, ", ".join(f"{a}={b}" for a, b in v.items()))
    Console().print(t)


if __name__ == "__main__":
    main()
