"""The wheel alone gives the whole tool: one top-level import name, recipes by name, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    # Built from a copy of the sources: the build leaves build/ and *.egg-info behind it.
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "demo-out", "study-out", "__pycache__", "*.so"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(wheels)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("sirst_synth-*.whl")
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    # The dependencies come from this test's environment through a path file (no download);
    # path files inside that folder are not read, so its editable sirst_synth stays invisible.
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "test-deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True
    )

    files = json.loads(
        subprocess.run(
            [
                py,
                "-c",
                "import json, importlib.metadata as m; "
                "print(json.dumps([str(f) for f in m.distribution('sirst-synth').files]))",
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        ).stdout
    )
    top = {f.split("/")[0] for f in files if f.endswith(".py")}
    assert top == {"sirst_synth"}
    assert {
        "sirst_synth/cli/app.py",
        "sirst_synth/recipes/sirst5k.yaml",
        "sirst_synth/recipes/study-cpu.yaml",
    } <= set(files)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    exe = str(env_dir / "bin" / "sirst-synth")
    work = tmp_path / "outside"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *args], cwd=work, env=env, capture_output=True, text=True)

    def python(code: str) -> str:
        return subprocess.run(
            [py, "-c", code], check=True, capture_output=True, text=True, cwd=work, env=env
        ).stdout.strip()

    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("sirst-synth 0.1.0 (native metrics kernel:")
    where = python("import sirst_synth; print(sirst_synth.__file__)")
    assert where.startswith(str(env_dir))  # the wheel's copy, not the checkout
    if shutil.which("cc") or shutil.which("gcc"):  # the C library holds both kernels
        built = python("from sirst_synth.train import kernels; print(kernels.available())")
        assert built == "True"
    for args in (
        ("demo-dataset", "d", "-n", "6", "-q"),
        ("build-noise-bank", "d", "--bank", "bank.h5", "-q"),
        (
            "generate",
            "d",
            "--bank",
            "bank.h5",
            "--out",
            "o",
            "--recipe",
            "sirst5k",
            "--count",
            "8",
            "-q",
        ),
        ("verify", "o", "-q"),
    ):
        r = run(*args)
        assert r.returncode == 0, (args, r.stderr)
    rows = [json.loads(x) for x in (work / "o" / "manifest.jsonl").read_text().splitlines()]
    assert sum(x["split"] == "development" for x in rows) == 8
    r = run("recipes", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["sirst5k"]["alpha"] == 0.1


def test_recipe_by_name_and_by_path(demo_root, tmp_path, cli, monkeypatch):
    from sirst_synth.recipes import recipe_names

    assert {"sirst5k", "train", "study-cpu", "study-paper", "study-smoke"} <= set(recipe_names())
    monkeypatch.chdir(tmp_path)
    assert cli("build-noise-bank", demo_root, "--bank", "bank.h5", "-q").code == 0
    r = cli(
        "generate",
        demo_root,
        "--bank",
        "bank.h5",
        "--out",
        "a",
        "--recipe",
        "sirst5k",
        "--count",
        "5",
        "-q",
    )
    assert r.code == 0, r.err
    assert "alpha: 0.1\ns: 3\n" in (tmp_path / "a" / "recipe.yaml").read_text()
    # a file of that name wins over the shipped recipe
    (tmp_path / "sirst5k").write_text("alpha: 0.25\n")
    r = cli(
        "generate",
        demo_root,
        "--bank",
        "bank.h5",
        "--out",
        "b",
        "--recipe",
        "sirst5k",
        "--count",
        "5",
        "-q",
    )
    assert r.code == 0, r.err
    assert "alpha: 0.25\n" in (tmp_path / "b" / "recipe.yaml").read_text()
    r = cli("generate", demo_root, "--bank", "bank.h5", "--out", "c", "--recipe", "nosuch")
    assert (
        r.code == 2
        and "shipped: " in r.err
        and "sirst5k" in r.err
        and not (tmp_path / "c").exists()
    )
    r = cli("--version")
    assert r.code == 0 and "native metrics kernel" in r.out
