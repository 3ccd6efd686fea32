"""Figures (matplotlib, Agg): data in, PNG bytes out; writing them is the caller's business."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from sirst_synth.names import METRIC_SCALE, METRIC_UNIT, metric_label

if TYPE_CHECKING:  # matplotlib loads when a figure is drawn
    from matplotlib.figure import Figure


def _figure(size=(6.4, 4.2)):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=100)
    return fig, ax


def png_bytes(fig: Figure) -> bytes:
    """A figure as PNG bytes (fixed metadata: the same figure gives the same bytes), closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _style(i: int) -> dict:
    """Colour and line style of the i-th arm: ten colours, then the same ten dashed, so no two
    of up to thirty arms look alike."""
    return {"color": f"C{i % 10}", "linestyle": ("-", "--", ":")[(i // 10) % 3]}


#: Fa (x1e-6) below which the symmetric-log axis is linear (it must show 0 false alarms).
FA_LINEAR_BELOW = 1.0


def _spans_decades(values: np.ndarray, decades: float = 2.0) -> bool:
    """Whether positive values spread over more than ``decades`` powers of ten (one run with
    a hundred times another's false alarms), counting values below FA_LINEAR_BELOW as it."""
    positive = values[values > 0]
    return (
        bool(positive.size)
        and float(positive.max()) / max(float(positive.min()), FA_LINEAR_BELOW) > 10**decades
    )


def _fa_axis(ax, fa: np.ndarray) -> None:
    """Fa in units of 1e-6; where every point is 0 the axis still shows a readable range.
    Curves that span more than two decades (one model with a hundred times the false alarms
    of another) get a symmetric-log axis, linear below FA_LINEAR_BELOW, so both stay legible."""
    top = float(fa.max()) if fa.size else 0.0
    if _spans_decades(fa):
        if fa.min() >= FA_LINEAR_BELOW:  # no point near 0: a plain log axis, no empty decades
            ax.set_xscale("log")
            ax.set_xlim(float(fa.min()) / 1.5, top * 1.5)
            ax.set_xlabel("Fa (x1e-6, log scale)")
            return
        ax.set_xscale("symlog", linthresh=FA_LINEAR_BELOW)
        ax.set_xlim(0, top * 1.5)
        ax.set_xlabel("Fa (x1e-6, symmetric log: linear below 1)")
        return
    ax.set_xlim(-0.05 * (top or 1.0), (top or 1.0) * 1.08)
    ax.set_xlabel("Fa (x1e-6)" + (" — 0 at every threshold" if top == 0 else ""))


def pd_fa_figure(curves: dict[str, list[dict]], title: str = "Pd-Fa over thresholds") -> Figure:
    """Pd against Fa over thresholds, one line per curve; with one or two curves every 4th
    threshold is labelled (more would hide the lines). Pd's axis starts just below the lowest
    point, so curves that differ by a few points of Pd stay apart."""
    fig, ax = _figure()
    all_fa, all_pd = [], []
    for i, (name, curve) in enumerate(curves.items()):
        pts = sorted(curve, key=lambda c: c["threshold"])
        fa = np.array([c["Fa"] * 1e6 for c in pts])
        pd = np.array([c["Pd"] for c in pts])
        all_fa.append(fa)
        all_pd.append(pd)
        (line,) = ax.plot(fa, pd, marker="o", markersize=3, label=name, **_style(i))
        if len(curves) > 2:
            continue
        for c, x, y in list(zip(pts, fa, pd, strict=True))[::4]:
            ax.annotate(
                f"{c['threshold']:.2f}",
                (x, y),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
                color=line.get_color(),
            )
    _fa_axis(ax, np.concatenate(all_fa) if all_fa else np.zeros(0))
    low = float(np.concatenate(all_pd).min()) if all_pd else 0.0
    ax.set_ylabel("Pd")
    ax.set_ylim(max(-0.02, np.floor((low - 0.05) * 20) / 20), 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    return fig


def pd_fa_png(curves: dict[str, list[dict]], title: str = "Pd-Fa over thresholds") -> bytes:
    return png_bytes(pd_fa_figure(curves, title))


def _validation_table(runs: list[Any], arm: str) -> tuple[list[int], np.ndarray]:
    """The arm's validation IoU x100 per run (rows) and step (columns; NaN where a run has
    no point there)."""
    hists = [r.history for r in runs if r.arm == arm and r.history]
    steps = sorted({h["step"] for hist in hists for h in hist})
    table = np.full((len(hists), len(steps)), np.nan)
    for j, hist in enumerate(hists):
        for h in hist:
            table[j, steps.index(h["step"])] = h["IoU"] * 100
    return steps, table


def iou_vs_step_figure(arms: list[str], runs: list[Any]) -> Figure:
    """Validation IoU against step, the arms overlaid (a few arms: the length check): one thin
    line per run, the arm's mean over seeds bold."""
    fig, ax = _figure()
    for i, arm in enumerate(arms):
        steps, table = _validation_table(runs, arm)
        if not table.size:
            continue
        style = _style(i)
        for row in table:
            ax.plot(steps, row, alpha=0.35, linewidth=0.8, **style)
        ax.plot(steps, np.nanmean(table, axis=0), marker="o", markersize=3, linewidth=2,
                label=f"{arm} (n={len(table)})", **style)  # fmt: skip
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("IoU x100 (validation split)")
    ax.set_ylim(bottom=0)
    ax.set_title("Validation IoU against step (thin: each run; bold: mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def iou_vs_step_panels(
    arms: list[str], runs: list[Any], against: dict[str, str] | None = None
) -> Figure:
    """Validation IoU against step, one panel per arm (a study's many arms and seeds would hide
    each other in one): a thin line per run, the mean over seeds bold, and dashed the mean of
    the arm it is read against (``against``: arm -> that arm); every panel on the same axes."""
    against = against or {}
    tables = {arm: _validation_table(runs, arm) for arm in arms}  # each read once
    shown = [a for a in arms if tables[a][1].size]
    cols = min(4, max(1, len(shown)))
    rows = -(-len(shown) // cols) if shown else 1
    fig, _ = _figure((3.2 * cols, 2.5 * rows + 0.5))
    fig.clf()
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    for k, (ax, arm) in enumerate(zip(axes, shown, strict=False)):
        steps, table = tables[arm]
        colour = _style(arms.index(arm))["color"]
        for row in table:
            ax.plot(steps, row, color=colour, alpha=0.35, linewidth=0.8)
        ax.plot(steps, np.nanmean(table, axis=0), color=colour, marker="o", markersize=2.5,
                linewidth=2)  # fmt: skip
        if against.get(arm) in shown:
            ref_steps, ref = tables[against[arm]]
            ax.plot(ref_steps, np.nanmean(ref, axis=0), color="k", linestyle="--",
                    linewidth=1, label=against[arm])  # fmt: skip
            ax.legend(fontsize=7, loc="lower right", handlelength=1.5)
        ax.set_title(f"{arm} (n={len(table)})", fontsize=9)
        ax.grid(alpha=0.3)
        if k % cols == 0:
            ax.set_ylabel("val IoU x100", fontsize=8)
        if k >= len(shown) - cols:
            ax.set_xlabel("optimiser step", fontsize=8)
        ax.tick_params(labelsize=7, labelbottom=True)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    axes[0].set_ylim(bottom=0)
    fig.suptitle(
        "Validation IoU against step (thin: each run; bold: mean over seeds; dashed: the mean "
        "of the arm it is read against)",
        fontsize=10,
    )
    return fig


def study_iou_vs_step(
    arms: list[str], runs: list[Any], against: dict[str, str] | None = None
) -> bytes:
    return png_bytes(iou_vs_step_panels(arms, runs, against))


def _mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    from sirst_synth.stats import t975

    mean = float(values.mean())
    if values.size < 2:
        return mean, mean, mean
    half = t975(values.size - 1) * float(values.std(ddof=1)) / np.sqrt(values.size)
    return mean, mean - half, mean + half


def points_figure(arms: list[str], runs: list[Any]) -> Figure:
    """IoU, Pd and Fa of every final model as a point, beside the arm's mean and its 95%
    t-interval; the interval is clipped to [0, 1] x scale, where these metrics end."""
    fig, _ = _figure((10.5, 3.8))
    fig.clf()
    axes = fig.subplots(1, 3)
    for ax, key in zip(axes, ("IoU", "Pd", "Fa"), strict=True):
        scale, label = METRIC_SCALE[key], metric_label(key)
        for i, arm in enumerate(arms):
            values = np.array([getattr(r, key) * scale for r in runs if r.arm == arm])
            if not values.size:
                continue
            jitter = np.linspace(-0.12, 0.12, values.size) if values.size > 1 else np.zeros(1)
            ax.scatter(i - 0.15 + jitter, values, s=14, color=f"C{i % 10}", alpha=0.8)
            mean, lo, hi = _mean_ci(values)
            lo, hi = max(lo, 0.0), min(hi, scale)  # every metric lies in [0, 1] x scale
            ax.errorbar([i + 0.2], [mean], yerr=[[mean - lo], [hi - mean]], fmt="s", color="k",
                        capsize=4, markersize=4)  # fmt: skip
        ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(arms) - 0.4)
        ax.set_ylim(bottom=0)
        if key == "Fa" and _spans_decades(
            np.array([getattr(r, key) * scale for r in runs if r.arm in arms])
        ):
            ax.set_yscale("symlog", linthresh=FA_LINEAR_BELOW)
            ax.set_ylim(bottom=0)
            label += " (symmetric log)"
        ax.set_title(f"{label}: runs, mean and 95% CI", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    return fig


def study_points(arms: list[str], runs: list[Any]) -> bytes:
    return png_bytes(points_figure(arms, runs))


def differences_figure(
    comparisons: list[dict], metrics: tuple[str, ...] = ("IoU", "Pd", "Fa")
) -> Figure:
    """Each arm minus its baseline: the mean paired difference and its 95% t-interval, with
    the zero line (a difference may be negative). One baseline for all is named in the
    titles; where arms have different ones (a scarce-data arm's is the reference on the same
    fraction), each tick names its pair. Every metric lies in [0, 1] x scale, so a difference
    lies within +-scale: an interval reaching past it (two seeds give t = 12.7) is cut there
    and its cut end drawn as a triangle, so that it cannot flatten the others."""
    baselines = {c["against"] for c in comparisons}
    one = len(baselines) == 1
    fig, _ = _figure((10.5, 3.8 if one else 4.6))
    fig.clf()
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    scale = METRIC_SCALE
    for ax, key in zip(axes, metrics, strict=True):
        names, cut = [], False
        for i, c in enumerate(comparisons):
            block = c["all"].get(key)
            if not block or block["mean_diff"] is None:
                continue
            mean = block["mean_diff"] * scale[key]
            lo, hi = (v * scale[key] for v in block["ci"]) if block["ci"] else (mean, mean)
            shown = max(lo, -scale[key]), min(hi, scale[key])
            ax.errorbar([i], [mean], yerr=[[mean - shown[0]], [shown[1] - mean]], fmt="o",
                        capsize=4, color=f"C{i % 10}")  # fmt: skip
            for end, at, marker in ((lo, shown[0], "v"), (hi, shown[1], "^")):
                if end != at:
                    ax.plot([i], [at], marker=marker, color=f"C{i % 10}", markersize=8)
                    cut = True
            names.append((i, c["arm"] if one else f"{c['arm']} − {c['against']}"))
        ax.axhline(0, color="k", linewidth=0.8)
        ax.set_xlim(-0.6, len(comparisons) - 0.4)
        ax.set_xticks(
            [i for i, _ in names], [n for _, n in names], rotation=30, ha="right", fontsize=8
        )
        against = f" vs {comparisons[0]['against']}" if one else ""
        limit = f"; ▲▼ cut at ±{scale[key]:g}" if cut else ""
        ax.set_title(f"Δ{key} ({METRIC_UNIT[key]}){against}, 95% CI{limit}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    return fig


def study_differences(
    comparisons: list[dict], metrics: tuple[str, ...] = ("IoU", "Pd", "Fa")
) -> bytes:
    return png_bytes(differences_figure(comparisons, metrics))


def study_pd_fa(arms: list[str], runs: list[Any]) -> bytes:
    """Each arm's Pd-Fa curve of the final models, averaged over seeds per threshold."""
    curves = {}
    for arm in arms:
        mine = [r.curve for r in runs if r.arm == arm and r.curve]
        if not mine:
            continue
        by_t: dict[float, list[dict]] = {}
        for curve in mine:
            for c in curve:
                by_t.setdefault(c["threshold"], []).append(c)
        curves[arm] = [
            {
                "threshold": t,
                "Pd": float(np.mean([c["Pd"] for c in cs])),
                "Fa": float(np.mean([c["Fa"] for c in cs])),
            }
            for t, cs in sorted(by_t.items())
        ]
    return pd_fa_png(curves, "Pd-Fa of the final models (mean over seeds)")
