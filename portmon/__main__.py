"""``python -m portmon``: the same as the ``portmon`` command."""

from __future__ import annotations

from portmon.cli.launch import main

if __name__ == "__main__":
    main()
