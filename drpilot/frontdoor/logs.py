"""structlog, configured once: JSON lines when stderr is not a terminal (collectors, CI,
the worker in Kubernetes), coloured key=value on a terminal. Bind context where it is known:
`log = get_logger().bind(runbook=..., run_id=..., phase=..., region=...)`."""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


def configure(level: str = "INFO", *, json: bool | None = None) -> None:
    global _configured
    if _configured:
        return
    as_json = not sys.stderr.isatty() if json is None else json
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (temporalio, botocore, kubernetes) log through stdlib logging: same stream.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    _configured = True


def get_logger(**context: object) -> structlog.stdlib.BoundLogger:
    configure()
    return structlog.get_logger("drpilot").bind(**context)
