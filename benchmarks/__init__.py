"""Benchmarks: timings and memory against Captum and the floor (see benchmarks/README.md)."""
