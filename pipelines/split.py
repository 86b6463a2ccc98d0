"""DVC stage `split`: see ticket_triage.stages.run_split."""

import logging
import sys

from ticket_triage.config import ConfigError, load_params
from ticket_triage.data import DataError
from ticket_triage.ingest.readers import IngestError
from ticket_triage.stages import run_split


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = run_split(load_params())
    except (ConfigError, DataError, IngestError, FileNotFoundError) as exc:  # the user's data or config: say what to fix
        print(f"split: error: {exc}", file=sys.stderr)
        return 2
    for w in report.get("warnings") or []:
        print(f"split: warning: {w}")
    print("split: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
