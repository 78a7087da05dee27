"""``python -m dynamicvit`` (also what ``torchrun -m dynamicvit`` runs)."""

import sys

from .cli import main

sys.exit(main())
