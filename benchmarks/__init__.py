"""Benchmarks: each script times pgflow against a baseline in the same run and prints ratios."""
