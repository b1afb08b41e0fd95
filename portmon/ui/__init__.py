"""portmon's Textual user interface: the live monitor (the core never imports this package)."""
