"""``python -m dynamicvit`` (also what ``torchrun -m dynamicvit`` runs)."""

import sys

from dynamicvit.cli import main

sys.exit(main())
