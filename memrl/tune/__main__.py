"""``python -m memrl.tune``: the same as ``memrl tune``."""

import sys

from memrl.tune.command import main

sys.exit(main())
