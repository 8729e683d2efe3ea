"""``python -m rnnkit …`` runs the command line, so ``torchrun -m rnnkit train …`` works too."""

from __future__ import annotations

import sys

from rnnkit.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
