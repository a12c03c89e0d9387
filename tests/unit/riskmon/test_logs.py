"""Log output: library records rate-limited per message template, identifiers redacted."""

from __future__ import annotations

import io
import logging

import structlog

from riskmon.logs import RepeatFilter, configure_logging, get_logger
from riskmon.settings import Settings


def test_a_library_repeating_one_error_logs_it_once_per_interval_with_a_count() -> None:
    """A broker outage makes aiokafka log one line thousands of times a second: through
    the filter, one line passes per template and interval, the next one says how many
    were left out, and a different message is not held back by it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    clock = [0.0]
    handler.addFilter(RepeatFilter(interval=10.0, clock=lambda: clock[0]))
    logger = logging.getLogger("aiokafka.conn.test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(5000):
            clock[0] = i * 0.001  # 5 s of a flood
            logger.error("Unable connect to node with id %s: %s", 1, "refused")
        logger.error("Unable to update metadata from %s", [1])
        clock[0] = 12.0
        logger.error("Unable connect to node with id %s: %s", 1, "refused")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "Unable connect to node with id 1: refused",
        "Unable to update metadata from [1]",
        "Unable connect to node with id 1: refused (and 4999 more like it in the last 12 s)",
    ]


def test_structured_events_are_not_rate_limited_and_identifiers_are_redacted() -> None:
    """Riskmon's own events are key-value lines, every one of them kept; a ``*_hash``
    value never reaches the output."""
    stream = io.StringIO()
    before = structlog.get_config()
    try:
        configure_logging(Settings.load(env={"RISKMON_ENV": "prod"}, config_file=None), stream)
        log = get_logger("riskmon.test")
        for i in range(3):
            log.info("decision", user=f"u{i}", phone_hash="13812345678")
    finally:
        structlog.configure(**before)
    out = stream.getvalue()
    assert out.count('"event":"decision"') == 3
    assert "13812345678" not in out and out.count("[redacted]") == 3
