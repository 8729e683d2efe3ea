"""Benchmarks: speed of backends and variants (:mod:`.speed`) and long-memory tasks."""
