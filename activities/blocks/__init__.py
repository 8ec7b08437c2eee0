"""The kinds of a runbook's blocks (spec.blocks) carried out by activities: an Aurora global
database's writer (aurora.py), a Kubernetes Job run to completion (jobs.py) and an HTTP
request (http.py); a scale block is kube.scale. Each takes explicit fields, never the
runbook: the engine (workflows/blocks.py) maps a block and the run's {source} / {target} to them."""
