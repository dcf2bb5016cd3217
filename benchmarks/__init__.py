"""``make bench``: Sundial against plain APScheduler 3, side by side, on the same backend.

Run ``python -m benchmarks --help``. Every measurement is printed, never asserted:
timings depend on the machine and on what else runs on it (the load is printed too).
"""
