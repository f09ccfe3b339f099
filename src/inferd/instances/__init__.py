"""Model instances: where, and on which device, a batch runs."""
