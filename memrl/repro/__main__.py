"""``python -m memrl.repro``: the same as ``memrl repro``."""

import sys

from memrl.repro.cli import main

sys.exit(main())
