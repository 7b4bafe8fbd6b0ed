"""Benchmarks: throughput figures printed by `python -m bench.<name>`; no assertions."""
