"""DVC stage `package` (`make bento`): see ticket_triage.service.packaging.run_package."""

import json
import logging
import sys

from ticket_triage.config import load_params
from ticket_triage.service.packaging import run_package


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(run_package(load_params()), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
