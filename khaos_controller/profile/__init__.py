"""Profiling: the experiment file, the parallel profiler, recovery measurement, workloads."""
