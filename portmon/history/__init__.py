"""History and baselines: a SQLite store of socket intervals, the recorder that fills it, and queries over it."""
