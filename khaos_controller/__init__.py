"""Khaos: keep a Flink job inside its recovery-time and latency SLOs by tuning its checkpoint interval."""
from pathlib import Path

__version__ = "0.1.0"
REPO_ROOT = Path(__file__).resolve().parent.parent
