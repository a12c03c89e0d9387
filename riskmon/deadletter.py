"""Dead letters: what could not be processed, with where it came from and why.

>>> rec = dead_letter(b"\\xff\\xfe", code="invalid_utf8", reason="not UTF-8",
...                   topic="loan.applications", partition=0, offset=7, now=0.0)
>>> rec["value_b64"], rec["value"], rec["offset"]
('//4=', None, 7)

A dead letter keeps at most ``keep`` bytes of the input, so that it always fits in a
Kafka message, however large the input was (JSON escaping can make text six times
longer):

>>> rec = dead_letter(b"x" * 100, code="oversized", reason="too large", topic="t",
...                   partition=0, offset=8, now=0.0, keep=10)
>>> rec["value"], rec["size"], rec["truncated"]
('xxxxxxxxxx', 100, True)

A message key that is, or holds, a phone, identity or card number in clear (a producer
keying by phone number; any run of eleven digits or more) is withheld, in the record and
so in the key it is sent with:

>>> [dead_letter(b"{}", code="c", reason="r", topic="t", partition=0, offset=9, now=0.0,
...              key=key)["key"] for key in (b"13812345678", b"phone:13812345678", b"u-1")]
['[withheld]', '[withheld]', 'u-1']
"""

from __future__ import annotations

import base64
from typing import Any

from riskmon.contract import format_ts
from riskmon.personal import WITHHELD, clear_kind, has_digit_run

#: Input bytes a dead letter keeps (of the value, and of the key): the default input
#: limit (``worker.max_message_bytes``), so that with it all of any input the worker would
#: accept travels along; a larger limit does not raise it. Escaped as JSON, even 64 KiB of
#: control characters stays far below Kafka's default limit of 1 MB a message.
KEEP_BYTES = 64 * 1024
#: Characters of a reason a dead letter keeps.
REASON_CHARS = 2000


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
    keep: int = KEEP_BYTES,
) -> dict[str, Any]:
    """The record written to ``risk.deadletter`` for one bad input.

    The original bytes travel along, the first ``keep`` of them (``truncated`` says if
    that was not all, of the value or of the key): as text when they are UTF-8, else
    base64. The reason is cut to
    :data:`REASON_CHARS` characters and the key to ``keep`` bytes.
    """
    value: str | None = None
    value_b64: str | None = None
    truncated = False
    if raw is not None:
        kept = raw[:keep]
        truncated = len(kept) < len(raw)
        value = _utf8(kept, truncated)
        if value is None:
            value_b64 = base64.b64encode(kept).decode("ascii")
    key_text: str | None = None
    if key is not None:
        key_text = key[:keep].decode("utf-8", errors="replace")
        truncated = truncated or len(key) > keep
        if clear_kind(key_text) is not None or has_digit_run(key_text):
            key_text = WITHHELD
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 1] + "…"
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
        "truncated": truncated,
        "ts": format_ts(now),
    }


def _utf8(data: bytes, truncated: bool) -> str | None:
    """``data`` as text, or ``None`` if it is not UTF-8; a cut input may end inside a
    character, whose first bytes are then dropped."""
    for cut in range(4 if truncated else 1):
        try:
            return data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None
