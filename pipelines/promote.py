"""DVC stage `promote`: see ticket_triage.stages.run_promote."""

import json
import logging
import sys

from ticket_triage.config import load_params
from ticket_triage.stages import run_promote


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(run_promote(load_params()), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
