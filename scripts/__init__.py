"""Operational scripts: local AWS emulator, resource setup, demo, benchmarks."""
