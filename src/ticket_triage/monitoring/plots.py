"""Evaluation figures as PNG files (plus the CSV behind them where DVC plots can use it).

Every ``plot_*`` function takes the data and an output ``path``, writes a PNG there (parent
folders created) and returns the path. Figures are drawn on a ``matplotlib.figure.Figure``
with the Agg canvas, chosen inside each function: importing this module does not import
matplotlib, and pyplot's global state is never touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plot paths must end in .png, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def plot_confusion_matrix(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any],
                          path: str | Path, normalize: bool = True, title: str = "Confusion matrix") -> Path:
    """Row-normalised confusion matrix (rows: true label, columns: predicted).

    Readable from 2 to ~80 labels: the figure grows with the label count, cell values are
    printed only up to 20 labels, tick fonts shrink beyond that. Predictions outside
    ``labels`` go to an extra ``<other>`` column. Writes ``<path>.csv`` with one row per
    ticket (``actual``, ``predicted``) for DVC's confusion template.
    """
    labels = [str(v) for v in labels]
    yt = ["<none>" if v is None else str(v) for v in y_true]
    yp = ["<none>" if v is None else str(v) for v in y_pred]
    if len(yt) != len(yp):
        raise ValueError(f"{len(yt)} true labels but {len(yp)} predictions")
    if not labels:
        raise ValueError("plot_confusion_matrix needs the label list")
    index = {lab: i for i, lab in enumerate(labels)}
    cols = labels + (["<other>"] if any(v not in index for v in yp) else [])
    m = np.zeros((len(labels), len(cols)))
    for t, p in zip(yt, yp):
        if t in index:
            m[index[t], index.get(p, len(labels))] += 1
    shown = m / np.clip(m.sum(axis=1, keepdims=True), 1, None) if normalize else m
    k = len(labels)
    side = float(np.clip(0.22 * k + 3.0, 4.0, 22.0))  # ~0.2 inch per cell for many labels
    font = 10.0 if k <= 20 else 7.0
    fig = _figure(side + 1.5, side)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=90, fontsize=font)
    ax.set_yticks(range(k))
    ax.set_yticklabels(labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title + (" (row-normalised)" if normalize else ""))
    if k <= 20:
        for i in range(k):
            for j in range(len(cols)):
                if m[i, j]:
                    v = shown[i, j]
                    ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center",
                            fontsize=font - 1, color="white" if (v > 0.5 if normalize else v > shown.max() / 2) else "black")
    out = _save(fig, path)
    pd.DataFrame({"actual": yt, "predicted": yp}).to_csv(out.with_suffix(".csv"), index=False)
    return out


def plot_reliability(conf: Sequence[float], correct: Sequence[bool], path: str | Path, n_bins: int = 15,
                     title: str = "Reliability diagram") -> Path:
    """Accuracy against mean confidence per bin, with the diagonal and a count histogram.

    Writes ``<path>.csv`` with the bins (``ticket_triage.metrics.reliability_bins``).
    """
    from ticket_triage.metrics import expected_calibration_error, reliability_bins

    bins = reliability_bins(conf, correct, n_bins)
    ece = expected_calibration_error(conf, correct, n_bins)
    fig = _figure(5.5, 6.5)
    ax = fig.add_axes((0.12, 0.35, 0.83, 0.58))
    hx = fig.add_axes((0.12, 0.08, 0.83, 0.2), sharex=ax)
    centers = (bins["bin_low"] + bins["bin_high"]) / 2
    width = 1.0 / n_bins
    full = bins["count"] > 0
    ax.bar(centers[full], bins.loc[full, "accuracy"], width=width * 0.9, color="#4c72b0", label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(bins.loc[full, "confidence"], bins.loc[full, "accuracy"], "o", color="#dd8452", label="bin mean")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    hx.bar(centers, bins["count"], width=width * 0.9, color="grey")
    hx.set_xlabel("confidence")
    hx.set_ylabel("tickets")
    out = _save(fig, path)
    bins.to_csv(out.with_suffix(".csv"), index=False)
    return out


def plot_coverage_precision(conf: Sequence[float], correct: Sequence[bool], path: str | Path,
                            target_precision: float | None = None,
                            title: str = "Coverage vs precision") -> Path:
    """Precision of the auto-routed set against its coverage as the threshold moves.

    Writes ``<path>.csv`` with the curve (threshold, coverage, precision, n_covered).
    """
    from ticket_triage.metrics import coverage_precision_curve

    curve = coverage_precision_curve(conf, correct)
    fig = _figure(6, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(curve["coverage"], curve["precision"], color="#4c72b0")
    if target_precision is not None:
        ax.axhline(target_precision, linestyle="--", color="#c44e52", label=f"target {target_precision:g}")
        ok = curve[curve["precision"] >= target_precision]
        if len(ok):
            best = ok.loc[ok["coverage"].idxmax()]
            ax.plot([best["coverage"]], [best["precision"]], "o", color="#c44e52",
                    label=f"coverage {best['coverage']:.2f} at threshold {best['threshold']:.2f}")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(max(0.0, float(curve["precision"].min()) - 0.05), 1.005)
    ax.set_xlabel("coverage (share auto-routed)")
    ax.set_ylabel("precision of auto-routed")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    out = _save(fig, path)
    curve.to_csv(out.with_suffix(".csv"), index=False)
    return out


def plot_cascade_tradeoff(report: Mapping[str, Any], path: str | Path,
                          title: str = "Cascade: cheap exits vs coverage") -> Path | None:
    """Every candidate of a cascade's joint exit search (``ticket_triage.decision.cascade``):
    share of the tuning tickets its first stage decides (speed) against the share the union
    auto-routes (coverage); certified candidates filled, the others hollow, the frontier
    joined and labelled with the ``max_coverage_loss`` that picks each point, the chosen one
    ringed. None (nothing written) for a report without ``n_tuning``.

    Writes ``<path>.csv`` (candidate, exit_shift, exit_share, auto_share,
    union_precision_lower, certified, chosen).
    """
    from ticket_triage.decision.cascade import trade_offs

    n = int(report.get("n_tuning") or 0)
    rows = list(report.get("candidates", []))
    if n <= 0 or not rows:
        return None
    chosen = report.get("chosen_row") or {}
    frame = pd.DataFrame([{
        "candidate": r["candidate"], "exit_shift": r["exit_shift"], "exit_share": r["exits"] / n,
        "auto_share": r["auto_routed"] / n, "union_precision_lower": r["union_precision_lower"],
        "certified": bool(r["certified"]),
        "chosen": all(r.get(k) == chosen.get(k) for k in ("candidate", "exit_shift", "exits", "auto_routed"))}
        for r in rows])
    fig = _figure(6.5, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    ok = frame[frame["certified"]]
    bad = frame[~frame["certified"]]
    ax.scatter(bad["exit_share"], bad["auto_share"], facecolors="none", edgecolors="#999999", s=28,
               label="not certified")
    ax.scatter(ok["exit_share"], ok["auto_share"], color="#4c72b0", s=28, label="certified")
    front = trade_offs(report)
    if front:
        ax.plot([o["exit_share"] for o in front], [o["auto_share"] for o in front], color="#4c72b0", lw=1)
        for o in front:
            ax.annotate(f"{o['max_coverage_loss']:g}", (o["exit_share"], o["auto_share"]), fontsize=7,
                        textcoords="offset points", xytext=(4, 4))
    pick = frame[frame["chosen"]]
    if len(pick):
        ax.scatter(pick["exit_share"], pick["auto_share"], s=140, facecolors="none", edgecolors="#c44e52",
                   linewidths=1.5, label=f"chosen (max_coverage_loss {report.get('max_coverage_loss', 0):g})")
    from matplotlib.ticker import PercentFormatter

    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
    ax.set_xlabel("decided by the first stage (share of tuning tickets)")
    ax.set_ylabel("auto-routed (share of tuning tickets)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    out = _save(fig, path)
    frame.to_csv(out.with_suffix(".csv"), index=False)
    return out


def plot_confidence_over_time(conf: Sequence[float], periods: Sequence[Any], path: str | Path,
                              n_bins: int = 20, title: str = "Confidence over time") -> Path:
    """Heatmap of the confidence histogram per period (columns: periods in sorted order, rows:
    confidence bins, colour: share of the period's tickets), with the median overlaid.

    Writes ``<path>.csv`` in long form (period, bin_low, bin_high, count, share).
    """
    c = np.asarray(conf, dtype=float)
    per = pd.Series(list(periods), dtype=object).astype(str)
    if len(c) != len(per):
        raise ValueError(f"{len(c)} confidences but {len(per)} periods")
    if len(c) == 0:
        raise ValueError("plot_confidence_over_time needs at least one ticket")
    names = sorted(per.unique())
    edges = np.linspace(0, 1, n_bins + 1)
    grid = np.zeros((n_bins, len(names)))
    medians, rows = [], []
    for j, name in enumerate(names):
        v = c[(per == name).to_numpy()]
        counts, _ = np.histogram(np.clip(v, 0, 1), bins=edges)
        grid[:, j] = counts / max(len(v), 1)
        medians.append(float(np.median(v)))
        rows += [{"period": name, "bin_low": edges[i], "bin_high": edges[i + 1], "count": int(counts[i]),
                  "share": float(grid[i, j])} for i in range(n_bins)]
    fig = _figure(float(np.clip(1.0 + 0.45 * len(names), 5, 20)), 4.5)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", extent=(-0.5, len(names) - 0.5, 0, 1))
    fig.colorbar(im, ax=ax, label="share of period's tickets")
    ax.plot(range(len(names)), medians, "o-", color="white", label="median")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("top-class confidence")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    out = _save(fig, path)
    pd.DataFrame(rows).to_csv(out.with_suffix(".csv"), index=False)
    return out


def plot_f1_over_time(frame: pd.DataFrame | Mapping[Any, Mapping[Any, float]], path: str | Path,
                      title: str = "Per-label F1 over time") -> Path:
    """Per-label F1 across periods: lines for up to 12 labels, a heatmap beyond.

    ``frame`` has columns ``period``, ``label``, ``f1``, or is ``{period: {label: f1}}``.
    Writes ``<path>.csv`` (period, label, f1).
    """
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame([{"period": p, "label": lab, "f1": f} for p, d in frame.items() for lab, f in d.items()])
    missing = {"period", "label", "f1"} - set(frame.columns)
    if missing:
        raise ValueError(f"plot_f1_over_time needs columns period, label, f1; missing {sorted(missing)}")
    if frame.empty:
        raise ValueError("plot_f1_over_time needs at least one (period, label, f1) row")
    data = frame.assign(period=frame["period"].astype(str), label=frame["label"].astype(str))
    wide = data.pivot_table(index="label", columns="period", values="f1", aggfunc="mean")
    wide = wide.reindex(sorted(wide.columns), axis=1)
    periods = list(wide.columns)
    if len(wide) <= 12:
        fig = _figure(max(6.0, 0.5 * len(periods) + 3), 4.5)
        ax = fig.add_subplot(1, 1, 1)
        for label, row in wide.iterrows():
            ax.plot(range(len(periods)), row.to_numpy(), "o-", label=label)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("F1")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
        ax.grid(alpha=0.3)
    else:
        wide = wide.loc[wide.mean(axis=1).sort_values().index]  # worst labels in the top rows
        k = len(wide)
        fig = _figure(float(np.clip(0.45 * len(periods) + 4, 6, 20)), float(np.clip(0.2 * k + 1.5, 4, 20)))
        ax = fig.add_subplot(1, 1, 1)
        im = ax.imshow(wide.to_numpy(), aspect="auto", cmap="RdYlGn", vmin=0, vmax=1)
        fig.colorbar(im, ax=ax, label="F1")
        ax.set_yticks(range(k))
        ax.set_yticklabels(list(wide.index), fontsize=9.0 if k <= 30 else 7.0)
    ax.set_xticks(range(len(periods)))
    ax.set_xticklabels(periods, rotation=60, ha="right", fontsize=8)
    ax.set_title(title)
    out = _save(fig, path)
    data[["period", "label", "f1"]].to_csv(out.with_suffix(".csv"), index=False)
    return out


def plot_cost_stacked(per_policy: pd.DataFrame, parts: Mapping[str, str], path: str | Path, *,
                      subtitle: str = "", title: str = "Monthly cost per routing policy (USD)") -> Path:
    """Stacked bars, one per routing policy (``per_policy['policy']``), one segment per cost part
    (the columns named in ``parts``, stacked in that order and labelled with ``parts[col]``);
    each bar carries its total, each visible segment its amount. The CSV beside the PNG holds
    the same table."""
    if per_policy.empty:
        raise ValueError("plot_cost_stacked needs at least one policy")
    missing = [c for c in parts if c not in per_policy.columns]
    if missing:
        raise ValueError(f"per_policy has no column(s) {missing}; columns: {list(per_policy.columns)}")
    colors = ["#4c72b0", "#dd8452", "#c44e52", "#8172b3", "#55a868", "#937860"]
    names = per_policy["policy"].astype(str).tolist()
    totals = per_policy[list(parts)].sum(axis=1).to_numpy(float)
    top = float(totals.max()) if len(totals) else 0.0
    fig = _figure(max(6.5, 2.2 * len(names) + 3.5), 5.0)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for i, (col, label) in enumerate(parts.items()):
        vals = per_policy[col].to_numpy(float)
        ax.bar(x, vals, 0.55, bottom=bottom, color=colors[i % len(colors)], label=label)
        for xi, (b, v) in enumerate(zip(bottom, vals)):
            if top > 0 and v / top >= 0.04:  # label segments tall enough to hold text
                ax.text(xi, b + v / 2, f"${v:,.0f}", ha="center", va="center", fontsize=8, color="white")
        bottom = bottom + vals
    for xi, t in enumerate(totals):
        ax.text(xi, t, f"total ${t:,.0f}", ha="center", va="bottom", fontsize=9, fontweight="bold")
    short = {col: label.split(" (")[0].split(",")[0] for col, label in parts.items()}
    ticks = [name + "".join(f"\n{short[col]}: ${float(per_policy[col].iloc[i]):,.0f}" for col in parts)
             for i, name in enumerate(names)]  # every part in figures, also those too thin to see
    ax.set_xticks(x)
    ax.set_xticklabels(ticks, fontsize=8)
    ax.set_ylabel("USD per month")
    ax.set_ylim(0, top * 1.15 if top > 0 else 1)
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="cost part", title_fontsize=8,
              frameon=False)
    out = _save(fig, path)
    frame = per_policy[["policy", *parts]].copy()
    frame["total"] = totals
    frame.to_csv(out.with_suffix(".csv"), index=False)
    return out
