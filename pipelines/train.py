"""DVC stage `train`: run the sweep named in params.yaml (see ticket_triage.training.run_sweep).

No command-line overrides: parameters come from params.yaml, which DVC composes from conf/ on
`dvc exp run -S ...` (Hydra composition, `.dvc/config` [hydra] enabled). Several experiments:

    dvc exp run --queue -S sweep=single -S 'model=tfidf_logreg,embed_logreg' -S 'seed=range(0,3)'
    dvc queue start -j 2 && dvc exp show --only-changed
"""

import logging
import sys

from ticket_triage.config import load_params
from ticket_triage.training import run_sweep


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv:
        print("train: takes no arguments; set parameters with `dvc exp run -S key=value` (Hydra overrides, "
              "sweeps with --queue) or change conf/ and run `triage config compose`", file=sys.stderr)
        return 2
    run_sweep(load_params())
    return 0


if __name__ == "__main__":
    from ticket_triage.models import TrainingDataError

    try:
        sys.exit(main(sys.argv[1:]))
    except (TrainingDataError, ValueError) as exc:  # bad or empty data: say what to do, exit non-zero
        print(f"train: error: {exc}", file=sys.stderr)
        sys.exit(2)
