"""The machine a run runs on: device and precision (environment.py), and several processes (distributed.py)."""
