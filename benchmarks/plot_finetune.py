"""Training budget vs test macro-F1 on the GitHub issues (issue 15), from the recorded runs.

Reads the CPU results ``bench_finetune.py`` wrote (no training here) and draws one panel per
repository: x = training minutes on 2 CPU cores, y = test macro-F1 on the 300 test issues,
one marker per run (every seed), the NLBSE'24 SetFit baseline as a dashed line and the
15-minute budget as a dotted one. Each configuration's median over seeds is a larger marker.

    .venv/bin/python benchmarks/plot_finetune.py [--out benchmarks/results/finetune_budget.png]

Caveat, also in the figure's footnote: the runs come from different days on a shared box
whose speed varied ~1.5x (react ~2.1 s a step on 2026-12-05, ~3.1 s on 2026-12-06), so the
x positions of different files are comparable to within that factor only.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BASELINE = {"react": 0.8718, "vscode": 0.8262}  # NLBSE'24 SetFit (shared/datasets/github-issues/README.md)
BUDGET_MIN = 15.0

#: (results file, how its configuration is labelled in the legend)
SOURCES = [
    ("finetune_cpu.json", "15% hold-out, early stopping"),
    ("finetune_cpu_refit_all.json", "all 300, 8 epochs"),
    ("finetune_cpu_refit_all_384.json", "all 300, 8 epochs, 384 tokens"),
    ("finetune_cpu_react_setfit.json", "SetFit, budget-stopped"),
]


def collect(results: Path = RESULTS) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """repo -> configuration label -> [(training minutes, test macro-F1)] over the recorded runs;
    TF-IDF and the frozen encoder once per repository (their first record)."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    seen_baseline: set[tuple[str, str]] = set()
    for name, label in SOURCES:
        path = results / name
        if not path.is_file():
            continue
        for run in json.loads(path.read_text())["runs"]:
            fam, repo = run["family"], run["repo"]
            point = (float(run.get("train_seconds") or 0.0) / 60.0, float(run["macro_f1"]))
            if fam in ("tfidf_logreg", "embed_logreg (frozen)"):
                if (repo, fam) not in seen_baseline:
                    seen_baseline.add((repo, fam))
                    out[repo]["TF-IDF + LR" if fam == "tfidf_logreg" else "frozen MiniLM + LR"].append(point)
                continue
            fam = fam.replace("tfidf_logreg", "TF-IDF")
            out[repo][f"{fam} ({label})"].append(point)
    return out


def plot(data: dict[str, dict[str, list[tuple[float, float]]]], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    repos = [r for r in ("react", "vscode") if r in data]
    fig = Figure(figsize=(13, 5.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(repos), sharey=True, squeeze=False)[0]
    labels = sorted({lab for r in repos for lab in data[r]})
    cmap = __import__("matplotlib").colormaps["tab20"]
    colour = {lab: cmap(i % 20) for i, lab in enumerate(labels)}
    for ax, repo in zip(axes, repos):
        for lab, pts in sorted(data[repo].items()):
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=18, alpha=0.55, color=colour[lab])
            ax.scatter([statistics.median(xs)], [statistics.median(ys)], s=70, color=colour[lab],
                       edgecolor="black", linewidth=0.6, label=lab)
        ax.axhline(BASELINE[repo], ls="--", color="black", lw=1)
        ax.text(0.2, BASELINE[repo] + 0.003, f"NLBSE'24 SetFit baseline {BASELINE[repo]:.4f}", fontsize=8)
        ax.axvline(BUDGET_MIN, ls=":", color="grey", lw=1)
        ax.text(BUDGET_MIN + 0.2, 0.70, "15-min budget", fontsize=8, color="grey", rotation=90)
        ax.set_title(f"{repo}: 300 train -> 300 test issues")
        ax.set_xlabel("training minutes, 2 CPU cores (one model; 'x3 seeds' = three)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test macro-F1")
    axes[0].set_ylim(0.68, 0.90)
    handles, names = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="upper center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.17))
    fig.subplots_adjust(bottom=0.3)
    fig.text(0.01, -0.03, "Small markers: one run (seed); large: median of the configuration. Runs from "
             "different days on a shared box (~1.5x speed spread). Source: benchmarks/results/finetune_cpu*.json",
             fontsize=7, color="grey")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(RESULTS / "finetune_budget.png"))
    args = ap.parse_args(argv)
    data = collect()
    if not data:
        raise SystemExit(f"no bench_finetune.py results under {RESULTS}: run benchmarks/bench_finetune.py first")
    print(f"wrote {plot(data, Path(args.out))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
