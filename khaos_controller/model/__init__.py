"""Models of latency and recovery: features, fit (with held-out errors), the typed model file, predict, report."""
