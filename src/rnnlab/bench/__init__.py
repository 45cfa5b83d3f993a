"""Benchmarks: training speed against a plain loop and the matmul peak; prepare's time and memory."""
