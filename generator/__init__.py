"""Realistic, deterministic replay files for the West Midlands LAs."""
