"""Metrics: one implementation per metric, registered by name with its direction."""
