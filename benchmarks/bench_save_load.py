"""Save + load time of every model family against its size (vocabulary 10k / 100k / 1M features).

Each family is first fitted for real on GitHub issues (``../shared/datasets/github-issues``,
react + vscode, 3 labels), then its TF-IDF vocabularies are grown to the target size with
synthetic n-grams (appended after the real ones; word n-grams of 4-20 characters, character
n-grams of 2-5) and its logistic-regression weights widened to match, so the files have the
size of a model trained on that many features without spending an hour fitting one. Timed:
``Classifier.save`` + ``load_classifier`` for ``tfidf_logreg``, ``ensemble`` (MiniLM head +
TF-IDF) and ``embed_logreg`` / the ``setfit`` head (a 384-wide head: no vocabulary, one size);
``UrgencyModel.save/load`` and ``SecondaryTagger.save/load`` (the bundle's other models). Every
loaded model must predict exactly what the saved one did (checked on 200 real issues).

``--skops`` also times skops 0.16 (what the project used before) on a TF-IDF pipeline for the
smaller sizes, to show the quadratic curve this replaces (bounded by ``--skops-max``).

Linear growth shows as a constant time per feature: the table prints µs/feature and the ratio
of each size's time to the previous size's (10x features -> ~10x time when linear).

    python benchmarks/bench_save_load.py [--sizes 10000,100000,1000000] [--repeats 3] [--skops]

Writes benchmarks/results/save_load.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRIAGE_DATASETS", str(ROOT.parent / "shared" / "datasets")))


def _issues(n: int) -> tuple[list[str], list[str]]:
    rows = list(csv.DictReader((SHARED / "github-issues" / "train.csv").open(encoding="utf-8")))
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(rows))[:n]
    return ([f"{rows[i]['title']}\n{rows[i]['body']}" for i in pick], [rows[i]["label"] for i in pick])


def _terms(n: int, rng: np.random.Generator, lo: int, hi: int, prefix: str) -> list[str]:
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzäöüß0123456789_ "))
    lens = rng.integers(lo, hi + 1, size=n)
    chars = alphabet[rng.integers(0, len(alphabet), size=int(lens.sum()))]
    flat = "".join(chars.tolist())
    out, pos = [], 0
    for i, k in enumerate(lens.tolist()):
        out.append(f"{prefix}{i:x}|{flat[pos:pos + k]}")  # "|" keeps them unique
        pos += k
    return out


def _grow_vectorizer(vec, target: int, rng: np.random.Generator, word: bool) -> int:
    """Append synthetic terms so the vectorizer has ``target`` features; returns how many were added."""
    vocab = vec.vocabulary_
    extra = max(0, target - len(vocab))
    if not extra:
        return 0
    start = len(vocab)
    new = _terms(extra, rng, 4, 20, "\x01w") if word else _terms(extra, rng, 1, 4, "\x01c")
    vocab.update(zip(new, range(start, start + extra)))
    vec._tfidf.idf_ = np.concatenate([vec._tfidf.idf_, rng.uniform(1, 10, extra)])
    vec._tfidf.n_features_in_ = len(vocab)
    return extra


def _grow_linear(lr, extra: int, rng: np.random.Generator) -> None:
    if extra:
        lr.coef_ = np.hstack([lr.coef_, rng.normal(0, 0.01, (lr.coef_.shape[0], extra))])
        lr.n_features_in_ = lr.coef_.shape[1]


def _grow_pipeline(features, lr, target: int, rng: np.random.Generator) -> int:
    """Split ``target`` features between the word and char vectorizers of a FeatureUnion."""
    (_, word), (_, char) = features.transformer_list[:2]
    word.max_features = char.max_features = None  # the grown model is what a fit with no cap gives
    added = _grow_vectorizer(word, target // 2, rng, True) + _grow_vectorizer(char, target - target // 2, rng, False)
    _grow_linear(lr, added, rng)
    return len(word.vocabulary_) + len(char.vocabulary_)


def _time(save, load, probe, repeats: int, workdir: Path) -> dict:
    saves, loads, size = [], [], 0
    expected = probe(None)
    for r in range(repeats):
        d = workdir / f"r{r}"
        t0 = time.perf_counter()
        save(d)
        t1 = time.perf_counter()
        back = load(d)
        t2 = time.perf_counter()
        if not np.array_equal(probe(back), expected):
            raise SystemExit("a loaded model predicts differently from the saved one: this is a bug")
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        saves.append(t1 - t0)
        loads.append(t2 - t1)
        shutil.rmtree(d)
    return {"save_s": statistics.median(saves), "load_s": statistics.median(loads),
            "total_s": statistics.median([a + b for a, b in zip(saves, loads)]), "bytes": size,
            "runs_save_s": saves, "runs_load_s": loads}


def run(sizes: list[int], repeats: int, skops: bool, skops_max: int) -> dict:
    from ticket_triage.decision.secondary import SecondaryTagger
    from ticket_triage.decision.urgency import UrgencyModel
    from ticket_triage.models import build_classifier, load_classifier

    texts, labels = _issues(1500)
    probe_texts = texts[:200]
    work = Path(tempfile.mkdtemp(prefix="bench-save-load-"))
    rows: list[dict] = []
    emb = np.random.default_rng(1).normal(size=(len(texts), 384))  # stands in for MiniLM features
    try:
        for n in sizes:
            rng = np.random.default_rng(n)
            tf = build_classifier("tfidf_logreg", max_features=min(n // 2, 5000)).fit(texts, labels, progress=False)
            feats = _grow_pipeline(tf.pipeline.named_steps["features"], tf.pipeline.named_steps["clf"], n, rng)
            rows.append({"family": "tfidf_logreg", "features": feats, **_time(
                tf.save, load_classifier, lambda m, c=tf: (m or c).predict_proba(probe_texts), repeats, work)})
            print(f"tfidf_logreg {feats:>9,} features: {rows[-1]['total_s']:.3f} s", flush=True)

            ens = build_classifier("ensemble", members=[{"family": "embed_logreg", "backend": "onnx-int8"},
                                                        {"family": "tfidf_logreg"}])
            head = ens.members[0].fit_embeddings(emb, labels)
            ens.members[1] = tf
            ens.labels = list(tf.labels)
            rows.append({"family": "ensemble", "features": feats + emb.shape[1], **_time(
                ens.save, load_classifier,
                lambda m, c=ens: np.hstack([(m or c).members[1].predict_proba(probe_texts),
                                            (m or c).members[0].predict_proba_embeddings(emb[:200])]),
                repeats, work)})
            print(f"ensemble     {feats:>9,} features: {rows[-1]['total_s']:.3f} s", flush=True)

            urg = UrgencyModel(max_features=min(n // 2, 5000)).fit(texts, ["high" if y == "bug" else "low" for y in labels])
            feats_u = _grow_pipeline(urg.pipeline.named_steps["tfidf"], urg.pipeline.named_steps["lr"], n, rng)
            rows.append({"family": "urgency", "features": feats_u, **_time(
                urg.save, UrgencyModel.load, lambda m, c=urg: (m or c).predict_proba(probe_texts), repeats, work)})

            sec = SecondaryTagger(min_count=5)
            sec.fit(texts, [[y, "x" if i % 3 else "y"] for i, y in enumerate(labels)])
            vec = sec.pipeline.named_steps["tfidf"]
            vec.max_features = None
            added = _grow_vectorizer(vec, n, rng, True)
            for est in sec.pipeline.named_steps["ovr"].estimators_:
                _grow_linear(est, added, np.random.default_rng(n + 1))
            rows.append({"family": "secondary", "features": len(vec.vocabulary_), **_time(
                sec.save, SecondaryTagger.load, lambda m, c=sec: (m or c).pipeline.predict_proba(probe_texts),
                repeats, work)})
            del tf, ens, urg, sec

        rows.append({"family": "embed_logreg (and the setfit head)", "features": emb.shape[1], **_time(
            head.save, load_classifier, lambda m, c=head: (m or c).predict_proba_embeddings(emb[:200]), repeats, work)})

        if skops:
            import skops.io as sio

            for n in [s for s in (2000, 5000, 10000, 20000, 50000, 100000) if s <= skops_max]:
                tf = build_classifier("tfidf_logreg", max_features=500).fit(texts[:300], labels[:300], progress=False)
                feats = _grow_pipeline(tf.pipeline.named_steps["features"], tf.pipeline.named_steps["clf"], n,
                                       np.random.default_rng(n))

                def save(d, p=tf.pipeline):
                    d.mkdir(parents=True)
                    sio.dump(p, d / "model.skops")

                def load(d):
                    return sio.load(d / "model.skops", trusted=sio.get_untrusted_types(file=d / "model.skops"))

                rows.append({"family": "tfidf_logreg via skops 0.16 (before)", "features": feats, **_time(
                    save, load, lambda m, c=tf.pipeline: (m or c).predict_proba(probe_texts), 1, work)})
                print(f"skops        {feats:>9,} features: {rows[-1]['total_s']:.3f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"rows": rows}


def _table(rows: list[dict]) -> str:
    lines = ["| family | features | save s | load s | total s | µs / feature | x previous size | file MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    prev: dict[str, dict] = {}
    for r in rows:
        p = prev.get(r["family"])
        ratio = f"{r['total_s'] / p['total_s']:.1f}x for {r['features'] / p['features']:.1f}x" if p else ""
        lines.append(f"| {r['family']} | {r['features']:,} | {r['save_s']:.3f} | {r['load_s']:.3f} | "
                     f"{r['total_s']:.3f} | {1e6 * r['total_s'] / r['features']:.2f} | {ratio} | "
                     f"{r['bytes'] / 1e6:.1f} |")
        prev[r["family"]] = r
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="vocabulary sizes (features), comma-separated")
    ap.add_argument("--repeats", type=int, default=3, help="save+load runs per size; the median is reported")
    ap.add_argument("--skops", action="store_true", help="also time skops 0.16 (the old format) on small sizes")
    ap.add_argument("--skops-max", type=int, default=20000, help="largest vocabulary to try with skops")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "save_load.json"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    res = run(sizes, args.repeats, args.skops, args.skops_max)
    cpu = subprocess.run(["bash", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    res.update({"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                "data": "github-issues train.csv (1,500 issues fitted; vocabularies grown with synthetic n-grams)",
                "machine": {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
                            "note": "shared with other engineers' jobs"},
                "repeats": args.repeats,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(_table(res["rows"]))
    print(f"peak RSS {res['peak_rss_mb']:.0f} MB; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
