"""The domain every layer may use: the runbook model (runbook.py), its loader with
FILE:LINE:COL errors (loader.py), the field reference (reference.py), durations, and the
environment's settings (settings.py). Nothing here does I/O beyond reading a file."""
