"""Benchmarks: minisbert against sentence-transformers, measured in the same run (make bench)."""
