"""Structured logs: events with key-values, JSON lines in production.

Identifiers of people (phone, national id, bank card, and anything else carried in a
``*_hash`` field) never reach a log line: :func:`redact_personal` removes them wherever
they sit, including inside nested event dicts.

>>> redact_personal(None, "info", {"event": "x", "phone_hash": "p-1", "ev": {"id_hash": "i"}})
{'event': 'x', 'phone_hash': '[redacted]', 'ev': {'id_hash': '[redacted]'}}
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from riskmon.settings import Settings

PERSONAL_KEYS = frozenset(
    {"phone", "phone_hash", "id_hash", "id_number", "bank_card", "bank_card_hash", "card"}
)
REDACTED = "[redacted]"


def _is_personal(key: str) -> bool:
    return key in PERSONAL_KEYS or key.endswith("_hash")


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if _is_personal(str(k)) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact_personal(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: replace personal identifiers by ``[redacted]``."""
    for key in list(event_dict):
        if _is_personal(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


class _StderrFactory:
    """Loggers that write to ``stream``, or to whatever ``sys.stderr`` is at the time."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def __call__(self, *args: Any) -> structlog.PrintLogger:
        return structlog.PrintLogger(file=self.stream or sys.stderr)


def configure_logging(settings: Settings, stream: Any = None) -> None:
    """Set up structlog (and the stdlib root logger) once, for the whole process."""
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_personal,
    ]
    renderer: Any
    if settings.env == "prod":
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_StderrFactory(stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=stream or sys.stderr)


def get_logger(name: str | None = None, **bound: Any) -> Any:
    return structlog.get_logger(name, **bound) if name else structlog.get_logger(**bound)
