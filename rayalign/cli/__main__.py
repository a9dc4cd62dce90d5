"""``python -m rayalign.cli`` = the ``rayalign`` console script (how Ray Jobs run it)."""

import sys

from rayalign.cli import main

sys.exit(main())
