"""portmon: a live TCP/UDP port monitor for the terminal, and one-shot port commands for scripts."""

__version__ = "0.1.0"
