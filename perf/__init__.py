"""Benchmarks: llmserve side by side with its peers (see perf/README.md)."""
