"""Dead letters: what could not be processed, with where it came from and why.

>>> rec = dead_letter(b"\\xff\\xfe", code="invalid_utf8", reason="not UTF-8",
...                   topic="loan.applications", partition=0, offset=7, now=0.0)
>>> rec["value_b64"], rec["value"], rec["offset"]
('//4=', None, 7)
"""

from __future__ import annotations

import base64
from typing import Any

from riskmon.contract import format_ts


def dead_letter(
    raw: bytes | None,
    *,
    code: str,
    reason: str,
    topic: str,
    partition: int | None,
    offset: int | None,
    now: float,
    key: bytes | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The record written to ``risk.deadletter`` for one bad input.

    The original bytes travel along: as text when they are UTF-8, else base64.
    """
    value: str | None = None
    value_b64: str | None = None
    if raw is not None:
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value_b64 = base64.b64encode(raw).decode("ascii")
    key_text: str | None = None
    if key is not None:
        key_text = key.decode("utf-8", errors="replace")
    return {
        "code": code,
        "reason": reason,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key_text,
        "event_id": event_id,
        "size": len(raw) if raw is not None else 0,
        "value": value,
        "value_b64": value_b64,
        "ts": format_ts(now),
    }
