"""DVC stage `clean`: see ticket_triage.stages.run_clean."""

import logging
import sys

from ticket_triage.config import load_params
from ticket_triage.stages import run_clean


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = run_clean(load_params())
    print(f"clean: {report.get('warnings') or 'ok'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
