"""Benchmarks (``make bench``): throughput as ratios against a reference in the same run."""
