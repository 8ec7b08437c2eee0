"""The command line as a user runs it: subprocesses, or the Typer app with Temporal replaced
at its seams."""

from tests.support.drills import alertmanager, s3  # noqa: F401  (fixtures of `drpilot drill`)
