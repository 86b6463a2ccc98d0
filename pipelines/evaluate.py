"""DVC stage `evaluate`: see ticket_triage.stages.run_evaluate."""

import json
import logging
import sys

from ticket_triage.config import ConfigError, load_params
from ticket_triage.data import DataError
from ticket_triage.stages import run_evaluate


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run_evaluate(load_params())
    except (ConfigError, DataError) as exc:  # e.g. a held-out set of another dataset: say what to do
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
