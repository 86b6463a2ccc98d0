"""DVC stage `train`: run the sweep named in params (see ticket_triage.training).

    python pipelines/train.py                               # the DVC stage: reads params.yaml
    python pipelines/train.py -m model=tfidf_logreg,embed_logreg   # Hydra multirun, ad hoc
    python pipelines/train.py model=tfidf_logreg seed=1      # one ad-hoc composition

With Hydra overrides the config is composed from conf/ (sweep=single unless you name one)
and every composition is a sweep of its own in MLflow; outputs go to artifacts/adhoc/.
"""

import logging
import sys

from ticket_triage.config import compose, load_params
from ticket_triage.training import run_sweep


def _expand(overrides: list[str]) -> list[list[str]]:
    """Cartesian product of comma-separated values (Hydra's basic sweeper semantics)."""
    import itertools

    axes = [[f"{o.split('=', 1)[0]}={v}" for v in o.split("=", 1)[1].split(",")] for o in overrides]
    return [list(c) for c in itertools.product(*axes)] if axes else [[]]


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    multirun = "-m" in argv or "--multirun" in argv
    overrides = [a for a in argv if a not in ("-m", "--multirun")]
    if not overrides and not multirun:
        run_sweep(load_params())
        return 0
    if not any(o.startswith("sweep=") for o in overrides):
        overrides.append("sweep=single")
    combos = _expand(overrides) if multirun else [overrides]
    for i, combo in enumerate(combos):
        params = compose(combo)
        params["paths"]["train"] = f"artifacts/adhoc/{i}"
        print(f"[multirun] #{i}: {' '.join(combo)}")
        run_sweep(params, metrics_path=f"artifacts/adhoc/{i}/metrics.json")
    return 0


if __name__ == "__main__":
    from ticket_triage.models import TrainingDataError

    try:
        sys.exit(main(sys.argv[1:]))
    except (TrainingDataError, ValueError) as exc:  # bad or empty data: say what to do, exit non-zero
        print(f"train: error: {exc}", file=sys.stderr)
        sys.exit(2)
