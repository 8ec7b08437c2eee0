"""The data tier's blocks of a runbook (spec.blocks): an Aurora global database's writer
(aurora.py) and a Kubernetes Job run to completion (jobs.py). Each takes explicit fields,
never the runbook: the engine maps a block and the run's {source} / {target} to them."""
