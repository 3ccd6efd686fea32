"""make gpu-check's script at smoke size on the CPU: everything a CPU run can show works."""

import json
import sys
from pathlib import Path

import pytest
from conftest import demo_with_bank

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_on_cpu(tmp_path, capsys):
    sys.path.insert(0, str(REPO))
    from bench.gpu_check import main

    root = demo_with_bank(tmp_path, images=8, seed=8)
    out = tmp_path / "gpu-out"
    report = main(["--smoke", "--device", "cpu", "--data", str(root / "data"), "--out", str(out),
                   "--budget-s", "600"])  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.startswith("plan: contact checks")  # the plan comes first
    saved = json.loads((out / "gpu_check.json").read_text())
    assert saved["contact"]["autocast_dtype"] == "torch.bfloat16"
    assert saved["contact"]["channels_last"] is True
    assert saved["contact"]["ddp_one_process"]["backend"] == "gloo"
    assert [(s["model"], s["compile"]) for s in saved["speed"]] == [("aff-unet-tiny", False)]
    assert saved["study_plan"]["steps"] == 4 and saved["study_plan"]["runs"] == 3
    assert set(saved["study"]["verdicts"]) == {"plain", "sirst5k"}
    assert (out / "study" / "results.md").is_file()
    assert report["wall_s"] > 0
