"""Benchmarks: each prints a table and writes a JSON report under ``build/bench``."""
