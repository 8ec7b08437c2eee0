"""The front-door services the command line and the webhook stand on: starting and steering
runs (runs.py), live progress (live.py), the worker and its health server, Temporal
connections, drill schedules and drills, readiness, the dry run, logging and loopback ports."""
