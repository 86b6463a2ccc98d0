"""DVC stage `split`: see ticket_triage.stages.run_split."""

import logging
import sys

from ticket_triage.config import load_params
from ticket_triage.stages import run_split


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = run_split(load_params())
    print(f"split: {report.get('warnings') or 'ok'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
