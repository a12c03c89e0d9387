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
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from riskmon.personal import CLEAR_FIELDS
from riskmon.settings import Settings

PERSONAL_KEYS = CLEAR_FIELDS | {"phone_hash", "id_hash", "bank_card_hash", "card"}
REDACTED = "[redacted]"


def is_personal(key: str) -> bool:
    """Whether a field of that name holds an identifier of a person.

    >>> is_personal("bank_card_hash"), is_personal("wifi_hash"), is_personal("device_id")
    (True, True, False)
    """
    return key in PERSONAL_KEYS or key.endswith("_hash")


def scrub(value: Any) -> Any:
    """``value`` with every personal field, at any depth, replaced by ``[redacted]``.

    >>> scrub({"user_id": "u1", "events": [{"phone_hash": "p", "amount": 5}]})
    {'user_id': 'u1', 'events': [{'phone_hash': '[redacted]', 'amount': 5}]}
    """
    if isinstance(value, dict):
        return {k: (REDACTED if is_personal(str(k)) else scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(v) for v in value)
    return value


def redact_personal(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: replace personal identifiers by ``[redacted]``."""
    for key in list(event_dict):
        if is_personal(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = scrub(event_dict[key])
    return event_dict


def error_text(exc: BaseException) -> str:
    """``Type: message`` once (aiokafka's messages start with their type already).

    >>> error_text(TimeoutError())
    'TimeoutError'
    >>> from aiokafka.errors import KafkaConnectionError
    >>> error_text(KafkaConnectionError("Unable to bootstrap from [...]"))
    'KafkaConnectionError: Unable to bootstrap from [...]'
    """
    name, text = type(exc).__name__, str(exc)
    if text.startswith(name):
        return text
    return f"{name}: {text}" if text else name


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


class _StderrFactory:
    """Loggers that write to ``stream``, or to whatever ``sys.stderr`` is at the time."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def __call__(self, *args: Any) -> structlog.PrintLogger:
        return structlog.PrintLogger(file=self.stream or sys.stderr)


class RepeatFilter(logging.Filter):
    """Let one record per message template through every ``interval`` seconds.

    Libraries log through the standard library; some repeat one line thousands of times
    a second while a dependency is down (aiokafka: "Unable connect to node ..." while the
    broker restarts). The first record of a template passes; its repeats within the
    interval are counted, and the next one to pass says how many were left out.

    >>> f = RepeatFilter(interval=10.0, clock=iter([0.0, 1.0, 2.0, 11.0]).__next__)
    >>> def rec(msg: str, arg: int) -> logging.LogRecord:
    ...     return logging.LogRecord("aiokafka", logging.ERROR, "x", 1, msg, (arg,), None)
    >>> [f.filter(r) for r in [rec("node %s down", 1), rec("node %s down", 2),
    ...                          rec("node %s down", 3)]]
    [True, False, False]
    >>> last = rec("node %s down", 4); f.filter(last), last.getMessage()
    (True, 'node 4 down (and 2 more like it in the last 11 s)')
    """

    MAX_TEMPLATES = 1000

    def __init__(self, interval: float = 10.0, clock: Any = None) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock or time.monotonic
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # -> [since, left out]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} (and {int(seen[1])} more like it in the last " + (
                f"{now - seen[0]:.0f} s)"
            )
        if len(self._seen) >= self.MAX_TEMPLATES and key not in self._seen:
            self._seen.clear()
        self._seen[key] = [now, 0]
        return True


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
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RepeatFilter())
    logging.basicConfig(level=max(level, logging.WARNING), handlers=[handler])


def get_logger(name: str | None = None, **bound: Any) -> Any:
    return structlog.get_logger(name, **bound) if name else structlog.get_logger(**bound)
