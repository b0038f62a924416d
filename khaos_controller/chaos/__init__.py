"""Chaos: failure plans (which process or host dies, and when)."""
