"""DVC stage `promote`: see ticket_triage.stages.run_promote."""

import json
import logging
import sys

from ticket_triage.config import ConfigError, load_params
from ticket_triage.stages import PromotionRefused, run_promote


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run_promote(load_params())
    except (ConfigError, PromotionRefused, LookupError) as exc:  # nothing to promote, or not comparable: say what to do
        print(f"promote: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
