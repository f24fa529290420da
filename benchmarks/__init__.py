"""Benchmarks over sdk and export: latency, throughput, features, trtexec."""
