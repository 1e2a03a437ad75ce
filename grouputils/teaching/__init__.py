"""What learners and instructors use.

Profiling, sweeps, plots, course and grading helpers, the synthetic IWP generator.

The top layer below the package root: it may import ``core``, ``outputs`` and ``run``.
"""
