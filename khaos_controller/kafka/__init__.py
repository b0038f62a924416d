"""Kafka workloads: record a live topic, replay it (or a synthetic workload) into one topic per copy, lag and latency."""
