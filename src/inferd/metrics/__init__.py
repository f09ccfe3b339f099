"""Observers fed by the engine: statistics, Prometheus metrics, per-request trace logging."""
