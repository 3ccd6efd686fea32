from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from sirst_synth.io.demo_writer import write_demo_dataset

REPO = Path(__file__).resolve().parents[1]
SIRST_V1 = Path(os.environ.get("SIRST_V1_DIR", REPO.parent / "shared" / "datasets" / "sirst-v1"))


@pytest.fixture(autouse=True)
def no_torch_compile(monkeypatch):
    """No torch.compile in the tests (seconds per shape, and a C++ compiler): the "compiled"
    batch-norm kernels run as the eager functions they compile, so the code around them is
    tested here and ``make bench`` checks the compiled kernels against the stock ones."""
    from sirst_synth.train import model

    monkeypatch.setattr(model, "compiled", lambda fn: fn)


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_jsonl(path: Path) -> list[dict]:
    """The raw records of a JSON-lines file (manifest.jsonl, metrics.jsonl), as written."""
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small procedural dataset (DNA-Net layout); tests must not modify it."""
    root = tmp_path_factory.mktemp("demo") / "demo"
    write_demo_dataset(root, images=12, seed=0)
    return root


def run_cli(*args) -> None:
    """Run the command line in-process for a fixture; it must succeed."""
    from sirst_synth.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    assert exc.value.code == 0, args


def demo_with_bank(root: Path, images: int, seed: int) -> Path:
    """``root/data`` (a procedural dataset of ``images`` from ``seed``) and ``root/bank.h5``
    built from it: the starting point of the module fixtures; returns ``root``."""
    write_demo_dataset(root / "data", images=images, seed=seed)
    run_cli("build-noise-bank", root / "data", "--bank", root / "bank.h5", "-q")
    return root


@pytest.fixture(scope="session")
def demo_bank(demo_root, tmp_path_factory) -> Path:
    """The noise bank of ``demo_root``; tests must not modify it."""
    bank = tmp_path_factory.mktemp("bank") / "bank.h5"
    run_cli("build-noise-bank", demo_root, "--bank", bank, "-q")
    return bank


@pytest.fixture(scope="session")
def sirst_root() -> Path:
    if not (SIRST_V1 / "images").is_dir():
        pytest.skip(f"real SIRST v1 data not found at {SIRST_V1} (set SIRST_V1_DIR)")
    return SIRST_V1


def noise_prone_regions(image, mask, grid: int, sigma: float, mu: float) -> set:
    """(row, col) of the noise-prone regions, written from the paper's definition with plain
    loops (an oracle independent of ``noise.scan_regions``): the image cut into grid x grid
    regions of floor(h/grid) x floor(w/grid), kept when no target pixel lies in it and
    0 < variance < sigma and 0 < mean < mu."""
    h, w = image.shape
    rh, rw = h // grid, w // grid
    kept = set()
    if rh == 0 or rw == 0:
        return kept
    for r in range(grid):
        for c in range(grid):
            pixels = [float(image[y, x]) for y in range(r * rh, (r + 1) * rh)
                      for x in range(c * rw, (c + 1) * rw)]  # fmt: skip
            if any(
                mask[y, x] for y in range(r * rh, (r + 1) * rh) for x in range(c * rw, (c + 1) * rw)
            ):
                continue
            mean = sum(pixels) / len(pixels)
            var = sum((p - mean) ** 2 for p in pixels) / len(pixels)
            if 0 < var < sigma and 0 < mean < mu:
                kept.add((r, c))
    return kept


def one_line(err: str) -> str:
    """The one line an error prints (no traceback, nothing before it)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli(capsys):
    """Run the command line in-process: (exit code, stdout, stderr)."""
    from sirst_synth.cli.main import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def write_dataset(
    root: Path,
    pairs: dict,
    train: list[str],
    test: list[str] | None = None,
    train_text: str | None = None,
) -> Path:
    """A DNA-Net layout dataset from arrays (or raw bytes) per stem; None skips a file."""
    import cv2

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "50_50").mkdir()
    for stem, (img, mask) in pairs.items():
        for folder, obj in (("images", img), ("masks", mask)):
            if obj is None:
                continue
            path = root / folder / f"{stem}.png"
            if isinstance(obj, bytes):
                path.write_bytes(obj)
            else:
                assert cv2.imwrite(str(path), obj)
    (root / "50_50" / "train.txt").write_text(
        train_text if train_text is not None else "\n".join(train)
    )
    if test:
        (root / "50_50" / "test.txt").write_text("\n".join(test))
    return root


def train_step_outputs(nets, inputs, y):
    """Each net's outputs after one training step's forward and backward on its input."""
    from sirst_synth.train.losses import deep_supervision_loss

    outs = [net(x) for net, x in zip(nets, inputs, strict=True)]
    for out in outs:
        deep_supervision_loss(out, y).mean().backward()
    return outs


def assert_same_buffers_and_scoring(stock, mine, x, calls: list) -> None:
    """Running statistics and batch counts as the stock model's after training; in scoring
    the same outputs, and no call into the kernel under test (``calls`` empty)."""
    import torch

    for (name, a), b in zip(stock.named_buffers(), mine.buffers(), strict=True):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name
    stock.eval(), mine.eval()
    calls.clear()
    with torch.no_grad():
        a, b = stock(x)[0].double(), mine(x)[0].double()
    assert float((a - b).abs().max() / a.abs().max()) < 1e-5
    assert calls == []
