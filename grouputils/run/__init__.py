"""Orchestration: executors, the run's SQLite state, steps as data, the pipeline.

Imports ``core`` and ``outputs``; never ``teaching``.
"""
