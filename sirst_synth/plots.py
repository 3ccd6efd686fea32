"""Figures (matplotlib, Agg): data in, PNG bytes out; writing them is the caller's business."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def _figure(size=(6.4, 4.2)):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=100)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    # Fixed metadata: the same figure gives the same bytes.
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _fa_axis(ax, fa: np.ndarray) -> None:
    """Fa in units of 1e-6; where every point is 0 the axis still shows a readable range."""
    top = float(fa.max()) if fa.size else 0.0
    ax.set_xlim(-0.05 * (top or 1.0), (top or 1.0) * 1.08)
    ax.set_xlabel("Fa (x1e-6)" + (" — 0 at every threshold" if top == 0 else ""))


def pd_fa_png(curves: dict[str, list[dict]], title: str = "Pd-Fa over thresholds") -> bytes:
    """Pd against Fa over thresholds, one line per curve; every 4th threshold is labelled."""
    plt, fig, ax = _figure()
    all_fa = []
    for name, curve in curves.items():
        pts = sorted(curve, key=lambda c: c["threshold"])
        fa = np.array([c["Fa"] * 1e6 for c in pts])
        pd = np.array([c["Pd"] for c in pts])
        all_fa.append(fa)
        (line,) = ax.plot(fa, pd, marker="o", markersize=3, label=name)
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
    ax.set_ylabel("Pd")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    return _png(plt, fig)


def study_iou_vs_step(arms: list[str], runs: list[Any]) -> bytes:
    """Validation IoU against step per arm: the mean over seeds and a min-max band."""
    plt, fig, ax = _figure()
    for arm in arms:
        hists = [r.history for r in runs if r.arm == arm and r.history]
        if not hists:
            continue
        steps = sorted({h["step"] for hist in hists for h in hist})
        table = np.full((len(hists), len(steps)), np.nan)
        for i, hist in enumerate(hists):
            for h in hist:
                table[i, steps.index(h["step"])] = h["IoU"] * 100
        mean = np.nanmean(table, axis=0)
        (line,) = ax.plot(steps, mean, marker="o", markersize=3, label=f"{arm} (n={len(hists)})")
        if len(hists) > 1:
            ax.fill_between(
                steps,
                np.nanmin(table, axis=0),
                np.nanmax(table, axis=0),
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("IoU x100 (test split)")
    ax.set_title("Validation IoU against step (mean over seeds, band: min..max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(plt, fig)


def study_bars(table: list[dict]) -> bytes:
    """IoU, Pd and Fa of each arm's final model: mean with the sample std as error bars."""
    plt, fig, axes = _figure((9.6, 3.6))
    fig.clf()
    axes = fig.subplots(1, 3)
    names = [row["arm"] for row in table]
    x = np.arange(len(names))
    for ax, (key, scale, label) in zip(
        axes,
        (("IoU", 100, "IoU x100"), ("Pd", 100, "Pd x100"), ("Fa", 1e6, "Fa x1e-6")),
        strict=True,
    ):
        mean = [row[key][0] * scale for row in table]
        std = [row[key][1] * scale for row in table]
        ax.bar(x, mean, yerr=std, capsize=4, color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(label + " (final model)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    return _png(plt, fig)


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
