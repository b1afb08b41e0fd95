"""Exports: portmon's snapshots as Prometheus / OpenMetrics metrics (HTTP endpoint and textfile)."""
