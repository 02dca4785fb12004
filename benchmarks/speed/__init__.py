"""The trial-speed measurements, one module each; benchmarks/trial_speed.py runs them."""
