"""The machine a run runs on: device and precision (environment.py), several processes (distributed.py),
the C allocator while training (allocator.py)."""
