"""The command line, one module per command group: main.py (the root app and the run
commands), runbook.py, drill.py, readiness.py, artifacts.py, webhook.py; shared.py holds
what they share (settings, speed, confirmation, running a coroutine); terminal.py the stderr
console and runbook loading; twin.py the seam where the twin's commands join."""
