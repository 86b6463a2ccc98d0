"""DVC stage `monitor`: continuous evaluation of the champion (same as `triage monitor`; `triage eval run` is its deprecated alias).
Settings: the `monitor` section of params.yaml. See ticket_triage.monitoring.continuous.run_continuous_eval."""

import logging
import sys

from ticket_triage.config import load_params
from ticket_triage.monitoring.continuous import run_continuous_eval


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run_continuous_eval(load_params())
    print(f"monitor: status {result.get('status')}: {'; '.join(result.get('reasons') or []) or 'no issues'}")
    print("see eval/continuous/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
