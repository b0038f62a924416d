"""Flink: the REST client, the probe and the one job sampler, the sink audit, job deployment records."""
