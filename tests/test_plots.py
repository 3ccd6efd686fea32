"""The plots draw the data they are given: the values, the axis limits, and no interval below
zero on a metric that cannot go there."""

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.collections import LineCollection, PathCollection  # noqa: E402

from sirst_synth import plots  # noqa: E402


def _run(arm, iou, pd, fa):
    return SimpleNamespace(arm=arm, IoU=iou, Pd=pd, Fa=fa, history=[], curve=[])


def test_points_show_every_run_and_clip_the_interval_at_zero():
    # IoU 0.50, 0.00, 0.02: mean 17.33, t-interval 17.33 +- 4.303 * 28.31 / sqrt(3) reaches
    # -53.0, which IoU cannot; the drawn interval stops at 0
    runs = [_run("a", v, pd, 1e-5) for v, pd in ((0.5, 0.9), (0.0, 1.0), (0.02, 0.7))]
    runs.append(_run("b", 0.6, 0.95, 2e-5))
    fig = plots.points_figure(["a", "b"], runs)
    iou_ax = fig.axes[0]
    scatters = [c for c in iou_ax.collections if isinstance(c, PathCollection)]
    drawn = np.concatenate([c.get_offsets()[:, 1] for c in scatters])
    assert sorted(np.round(drawn, 6)) == [0.0, 2.0, 50.0, 60.0]  # every run, x100
    assert iou_ax.get_ylim()[0] == 0.0
    lows = [seg[:, 1].min() for c in iou_ax.collections if isinstance(c, LineCollection)
            for seg in c.get_segments()]  # fmt: skip
    assert lows and min(lows) >= 0.0  # no error bar below zero
    highs = [seg[:, 1].max() for c in fig.axes[1].collections if isinstance(c, LineCollection)
             for seg in c.get_segments()]  # fmt: skip
    assert highs and max(highs) <= 100.0  # Pd 0.9 and 0.95 ... the interval stops at 100
    mean_markers = [line.get_ydata()[0] for line in iou_ax.lines if line.get_marker() == "s"]
    assert mean_markers[0] == pytest.approx((50 + 0 + 2) / 3)
    plots.png_bytes(fig)


def test_differences_draw_the_mean_interval_and_the_zero_line():
    comparisons = [
        {"arm": "x", "against": "ref", "all": {
            "IoU": {"mean_diff": -0.05, "ci": [-0.08, -0.02]},
            "Pd": {"mean_diff": 0.01, "ci": [-0.01, 0.03]},
            "Fa": {"mean_diff": 2e-5, "ci": [1e-5, 3e-5]},
        }},
    ]  # fmt: skip
    fig = plots.differences_figure(comparisons)
    iou_ax = fig.axes[0]
    assert [line.get_ydata()[0] for line in iou_ax.lines if line.get_marker() == "o"] == [
        pytest.approx(-5.0)
    ]
    (seg,) = [s for c in iou_ax.collections for s in c.get_segments()]
    assert seg[:, 1].tolist() == pytest.approx([-8.0, -2.0])
    zero = [line for line in iou_ax.lines if list(line.get_ydata()) == [0, 0]]
    assert zero, "the zero line is drawn"
    plots.png_bytes(fig)


def test_differences_name_each_pair_where_the_baselines_differ():
    block = {"IoU": {"mean_diff": 0.02, "ci": [0.01, 0.03]}}
    comparisons = [
        {"arm": "paste", "against": "ref", "all": block},
        {"arm": "paste-quarter", "against": "ref-quarter", "all": block},
    ]
    fig = plots.differences_figure(comparisons, metrics=("IoU",))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "paste − ref",
        "paste-quarter − ref-quarter",
    ]
    assert ax.get_title() == "ΔIoU (x100), 95% CI"
    one = plots.differences_figure(comparisons[:1], metrics=("IoU",)).axes[0]
    assert [t.get_text() for t in one.get_xticklabels()] == ["paste"]
    assert one.get_title() == "ΔIoU (x100) vs ref, 95% CI"


def test_differences_cut_an_interval_at_the_range_a_difference_can_take():
    # two seeds: IoU -0.3066 [-3.3809, +2.7676] (the study's plain arm); a difference of two
    # IoUs lies in [-1, 1], so the bar stops at -100 and +100 with a triangle at each cut end
    comparisons = [
        {"arm": "plain", "against": "ref", "all": {"IoU": {"mean_diff": -0.3066, "ci": [-3.3809, 2.7676]}}},
        {"arm": "paste", "against": "ref", "all": {"IoU": {"mean_diff": 0.0147, "ci": [-0.0349, 0.0644]}}},
    ]  # fmt: skip
    ax = plots.differences_figure(comparisons, metrics=("IoU",)).axes[0]
    segs = sorted(s[:, 1].tolist() for c in ax.collections for s in c.get_segments())
    assert segs == [pytest.approx([-100.0, 100.0]), pytest.approx([-3.49, 6.44])]
    cuts = [
        (line.get_marker(), line.get_ydata()[0])
        for line in ax.lines
        if line.get_marker() in ("v", "^")
    ]
    assert sorted(cuts) == [("^", 100.0), ("v", -100.0)]  # only the cut bar's ends
    assert ax.get_title() == "ΔIoU (x100) vs ref, 95% CI; ▲▼ cut at ±100"
    assert ax.get_ylim()[0] >= -110 and ax.get_ylim()[1] <= 110


def test_pd_fa_axis_shows_fa_per_million_and_pd_within_bounds():
    curve = [{"threshold": t, "Pd": p, "Fa": f} for t, p, f in
             ((0.1, 0.9, 4e-5), (0.5, 0.8, 2e-5), (0.9, 0.5, 0.0))]  # fmt: skip
    fig = plots.pd_fa_figure({"m": curve})
    ax = fig.axes[0]
    (line,) = ax.lines
    assert list(line.get_xdata()) == pytest.approx([40.0, 20.0, 0.0])
    assert list(line.get_ydata()) == [0.9, 0.8, 0.5]
    assert ax.get_xscale() == "linear"  # 40 / 20: within two decades
    assert ax.get_xlim()[1] == pytest.approx(40.0 * 1.08)
    assert ax.get_ylim() == pytest.approx((0.45, 1.02))  # 0.05 below the lowest Pd, rounded
    assert len(ax.texts) == 1  # one curve: every 4th threshold labelled (0.1)
    plots.png_bytes(fig)


def _curve(pd, fa):
    return [{"threshold": 0.5, "Pd": pd, "Fa": fa}, {"threshold": 0.1, "Pd": pd, "Fa": fa * 2}]


def test_pd_fa_turns_logarithmic_when_one_model_has_a_hundred_times_the_alarms():
    curves = {"a": _curve(0.9, 10e-6), "b": _curve(0.92, 40e-6), "c": _curve(0.93, 5000e-6)}
    ax = plots.pd_fa_figure(curves).axes[0]
    assert ax.get_xscale() == "log"  # 10000 / 10: three decades, none near 0
    assert ax.get_xlim() == pytest.approx((10 / 1.5, 10000 * 1.5))
    assert not ax.texts  # three curves: no threshold labels over the lines
    assert [line.get_linestyle() for line in ax.lines] == ["-", "-", "-"]
    curves["zero"] = _curve(0.9, 0.0)
    ax = plots.pd_fa_figure(curves).axes[0]
    assert ax.get_xscale() == "symlog" and ax.get_xlim() == pytest.approx((0, 15000))
    many = {f"m{i}": _curve(0.9, 1e-6) for i in range(12)}
    styles = [(line.get_color(), line.get_linestyle()) for line in
              plots.pd_fa_figure(many).axes[0].lines]  # fmt: skip
    assert len(set(styles)) == 12  # the 11th and 12th are dashed, not repeats


def _hist_run(arm, ious):
    history = [{"step": 100 * (k + 1), "IoU": v} for k, v in enumerate(ious)]
    return SimpleNamespace(arm=arm, history=history)


def test_iou_vs_step_panels_one_arm_each_with_its_baseline_dashed():
    runs = [_hist_run("ref", [0.2, 0.6]), _hist_run("ref", [0.4, 0.8])]
    runs += [_hist_run(a, [0.1, 0.5]) for a in ("a", "b", "c", "ref-q", "a-q")]
    arms = ["ref", "a", "b", "c", "ref-q", "a-q", "no-runs"]
    fig = plots.iou_vs_step_panels(arms, runs, {"a": "ref", "a-q": "ref-q", "b": "ref"})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 8 and len(visible) == 6  # 4 columns, 2 rows; no panel without runs
    assert [ax.get_title() for ax in visible] == [
        "ref (n=2)",
        "a (n=1)",
        "b (n=1)",
        "c (n=1)",
        "ref-q (n=1)",
        "a-q (n=1)",
    ]
    ref_ax, a_ax, c_ax, aq_ax = visible[0], visible[1], visible[3], visible[5]
    assert len(ref_ax.lines) == 3  # two runs and their mean, no baseline of its own
    assert list(ref_ax.lines[-1].get_ydata()) == pytest.approx([30.0, 70.0])
    (dashed,) = [line for line in a_ax.lines if line.get_linestyle() == "--"]
    assert list(dashed.get_ydata()) == pytest.approx([30.0, 70.0])  # ref's mean
    (dashed,) = [line for line in aq_ax.lines if line.get_linestyle() == "--"]
    assert list(dashed.get_ydata()) == pytest.approx([10.0, 50.0]) and dashed.get_label() == "ref-q"
    assert not [line for line in c_ax.lines if line.get_linestyle() == "--"]
    assert ref_ax.get_ylim()[0] == 0.0 and a_ax.get_ylim() == ref_ax.get_ylim()  # shared
    plots.png_bytes(fig)


def test_points_put_fa_on_a_log_axis_only_when_runs_differ_by_decades():
    close = [_run("a", 0.6, 0.9, 40e-6), _run("b", 0.6, 0.9, 60e-6)]
    fa_ax = plots.points_figure(["a", "b"], close).axes[2]
    assert fa_ax.get_yscale() == "linear" and fa_ax.get_title().startswith("Fa x1e-6: ")
    far = [_run("a", 0.6, 0.9, 40e-6), _run("b", 0.6, 0.9, 5000e-6)]
    fa_ax = plots.points_figure(["a", "b"], far).axes[2]
    assert fa_ax.get_yscale() == "symlog" and "(symmetric log)" in fa_ax.get_title()
    assert fa_ax.get_ylim()[0] == 0.0
