"""The runtime controller: config, collector -> planner -> realizer, journal and metrics, the daemon loop."""
