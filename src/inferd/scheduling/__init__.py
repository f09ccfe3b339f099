"""Schedulers: queue requests for one model version and hand work to its free instances."""
