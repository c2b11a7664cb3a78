"""``python -m eightfold`` runs the CLI."""

from __future__ import annotations

import sys

from eightfold.cli import main

sys.exit(main())
