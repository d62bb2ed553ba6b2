"""Benchmarks of the Rollwatch pipeline on a local broker: scripts that print figures, never timed tests."""
