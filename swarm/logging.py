"""structlog set-up, called once in every process that runs swarm code (driver and each actor).

Console output on a terminal, JSON lines otherwise or when SWARM_LOG_FORMAT=json. The level
comes from SWARM_LOG_LEVEL (default: info). Query id, agent and hop are bound per message by
the routing core through contextvars, so every line of a query's handling carries them.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_configured: tuple[str, str] | None = None


def configure_logging(fmt: str | None = None, level: str | None = None) -> None:
    global _configured
    fmt = fmt or os.environ.get("SWARM_LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
    level = (level or os.environ.get("SWARM_LOG_LEVEL") or "info").lower()
    if _configured == (fmt, level):
        return
    if fmt not in ("console", "json"):
        raise ValueError(f"SWARM_LOG_FORMAT must be 'console' or 'json', got {fmt!r}")
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"SWARM_LOG_LEVEL {level!r} is not a log level (debug, info, warning, error)")
    renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()) if fmt == "console" else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_current_stderr,
        cache_logger_on_first_use=False,
    )
    _configured = (fmt, level)


def _current_stderr(*_args) -> structlog.PrintLogger:
    """A logger on whatever sys.stderr is when the line is written: one bound at configure time
    outlives a replaced stream (a test's captured stderr) and fails on it once it is closed."""
    return structlog.PrintLogger(sys.stderr)


def logging_settings() -> tuple[str | None, str | None]:
    """The (format, level) this process chose, to hand to the actors it starts."""
    return _configured or (None, None)
