"""Benchmarks: environment and trainer throughput, and the (variant × backend) matrix.

Speed and memory figures come from these scripts, never from timed assertions in tests.
"""
