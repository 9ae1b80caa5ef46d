"""`make bench`: the latency budget measured side by side, written to BENCHMARKS.md."""
