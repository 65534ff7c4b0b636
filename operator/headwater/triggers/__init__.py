"""Triggers: what moves when an ImageStream tag moves (builds, workloads)."""
