"""Blocks a runbook adds to the procedures (spec.blocks): one module per kind."""
