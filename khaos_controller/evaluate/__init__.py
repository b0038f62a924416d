"""The evaluation: Khaos against static checkpoint intervals on one cluster, same trace, same failures."""
