"""The query layer: pure functions over snapshots (filters, sorting, diff, event streams)."""
