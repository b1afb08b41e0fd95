"""``python -m portmon``: the same as the ``portmon`` command."""

from __future__ import annotations

import sys

from portmon.cli import main

if __name__ == "__main__":
    sys.exit(main())
