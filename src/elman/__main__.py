"""``python -m elman``: the command line (what ``torchrun -m elman`` starts in each worker)."""

import sys

from elman.cli import main

sys.exit(main())
